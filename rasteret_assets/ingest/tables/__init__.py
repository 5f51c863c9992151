"""Parquet/GeoParquet record tables: scan, plan, prepare, build, monthly reads, changes."""
