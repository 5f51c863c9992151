"""Collections on disk or S3: GeoParquet 1.1 in hive partitions, written atomically per partition.

* :mod:`.info` — what a collection is (:class:`CollectionInfo`), date parsing.
* :mod:`.geoparquet` — the ``geo`` metadata every file carries.
* :mod:`.reference_footer` — the same info under the footer keys rasteret 0.4.1 reads.
* :mod:`.store` — local vs. S3 and the atomic swap on each.
* :mod:`.partition_file` — one partition's file: staged piece by piece, swapped in.
* :mod:`.writer` — a whole table at once, one staged file per partition.
* :mod:`.streaming` — a stream of tables, routed to partitions, swapped in at the end.
* :mod:`.reader` — :class:`Collection`: open, describe, filter with pushdown.

This layer depends on :mod:`rasteret_assets.contract` only.
"""

from rasteret_assets.collection.geoparquet import (
    GEO_KEY,
    GEOPARQUET_VERSION,
    geoparquet_metadata,
)
from rasteret_assets.collection.info import (
    METADATA_KEY,
    CollectionInfo,
    normalize_date_range,
    parse_date_range,
    parse_instant,
)
from rasteret_assets.collection.partition_file import DATA_FILE, PartitionFile
from rasteret_assets.collection.reader import Collection, bbox_expression
from rasteret_assets.collection.streaming import PartitionedWriter
from rasteret_assets.collection.writer import (
    validate_partition_columns,
    write_collection,
)

__all__ = [
    "DATA_FILE",
    "GEOPARQUET_VERSION",
    "GEO_KEY",
    "METADATA_KEY",
    "Collection",
    "CollectionInfo",
    "PartitionFile",
    "PartitionedWriter",
    "bbox_expression",
    "geoparquet_metadata",
    "normalize_date_range",
    "parse_date_range",
    "parse_instant",
    "validate_partition_columns",
    "write_collection",
]
