"""STAC sources: API search, static catalogs, items to records, change queries."""
