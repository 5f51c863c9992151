"""Where each collection row came from: when, by which run, with which parser.

Appended after the header join (which stays about headers); each band's source object ETag
and size are already in its ``{band}_metadata`` struct (``source_etag``, ``source_size``).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import pyarrow as pa

INGESTED_AT = "ingested_at"
RUN_ID = "run_id"
PARSER_VERSION = "parser_version"

LINEAGE_TYPES = {
    INGESTED_AT: pa.timestamp("us", tz="UTC"),
    RUN_ID: pa.string(),
    PARSER_VERSION: pa.string(),
}
LINEAGE_DESCRIPTIONS = {
    INGESTED_AT: "When this row was published (UTC)",
    RUN_ID: "The Dagster run that published this row",
    PARSER_VERSION: "The header parser (package version) that read this row's COG headers",
}


def parser_version() -> str:
    try:
        return f"rasteret-assets {version('rasteret-assets')}"
    except PackageNotFoundError:  # imported from a source tree that is not installed
        return "rasteret-assets (not installed)"


@dataclass(frozen=True)
class Lineage:
    """The values every row of one published month gets."""

    run_id: str
    ingested_at: datetime
    parser: str

    @classmethod
    def now(cls, run_id: str) -> "Lineage":
        return cls(run_id=run_id, ingested_at=datetime.now(UTC), parser=parser_version())

    def append_to(self, table: pa.Table) -> pa.Table:
        """``table`` with the three lineage columns appended (replacing stale ones)."""
        values = {INGESTED_AT: self.ingested_at, RUN_ID: self.run_id, PARSER_VERSION: self.parser}
        for name, value in values.items():
            column = pa.repeat(pa.scalar(value, LINEAGE_TYPES[name]), table.num_rows)
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(pa.field(name, LINEAGE_TYPES[name]), column)
        return table
