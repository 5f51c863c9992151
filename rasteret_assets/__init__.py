"""rasteret-assets: raster imagery catalogs turned into query-ready GeoParquet collections."""
