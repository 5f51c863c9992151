"""The contract's columns from whatever a source hands over: ids, times, footprints, CRS."""
