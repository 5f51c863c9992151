"""The footer keys rasteret 0.4.1 reads, written beside the project's own and read back.

rasteret's loader takes a collection's ``name``, ``description``, ``data_source`` and
``date_range`` from plain key/value pairs in the Parquet footer (it also writes ``created``
and ``rasteret_collection_version``); without them ``rasteret.load`` reports the folder name
and an empty data source, and picks no cloud settings. Every collection file therefore
carries those keys as well as the project's JSON :data:`~.info.METADATA_KEY`, and
:meth:`Collection.open <.reader.Collection.open>` falls back on them for files rasteret
wrote.

rasteret's formats: UTF-8 strings, ``date_range`` as ``"<start>,<end>"`` (ISO 8601, empty
when unknown), ``created`` as a naive local-time ISO string, version ``"1"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from rasteret_assets.collection.info import CollectionInfo, parse_instant

NAME_KEY = b"name"
DESCRIPTION_KEY = b"description"
DATA_SOURCE_KEY = b"data_source"
DATE_RANGE_KEY = b"date_range"
CREATED_KEY = b"created"
VERSION_KEY = b"rasteret_collection_version"
#: The collection format version rasteret 0.4.1 writes.
REFERENCE_VERSION = b"1"

REFERENCE_KEYS = (
    NAME_KEY,
    DESCRIPTION_KEY,
    DATA_SOURCE_KEY,
    DATE_RANGE_KEY,
    CREATED_KEY,
    VERSION_KEY,
)


def reference_footer(info: CollectionInfo) -> dict[bytes, bytes]:
    """``info`` as the key/value pairs rasteret 0.4.1's loader reads."""
    date_range = ",".join(info.date_range) if info.date_range else ""
    return {
        NAME_KEY: info.name.encode(),
        DESCRIPTION_KEY: info.description.encode(),
        DATA_SOURCE_KEY: info.data_source.encode(),
        DATE_RANGE_KEY: date_range.encode(),
        CREATED_KEY: (info.created or "").encode(),
        VERSION_KEY: REFERENCE_VERSION,
    }


def has_reference_footer(metadata: Mapping[bytes, bytes]) -> bool:
    """Whether a footer carries rasteret's keys (every collection rasteret writes does)."""
    return VERSION_KEY in metadata


def info_from_reference(metadata: Mapping[bytes, bytes]) -> CollectionInfo:
    """A :class:`CollectionInfo` from rasteret's keys; naive times are read as UTC.

    ``created`` is rasteret's local wall-clock time, so it is converted from this machine's
    zone; dates in ``date_range`` carry no zone and are UTC like the rest of a collection.
    """

    def text(key: bytes) -> str:
        return metadata.get(key, b"").decode("utf-8", errors="replace").strip()

    date_range = None
    start, comma, end = text(DATE_RANGE_KEY).partition(",")
    if comma and start and end:
        try:
            date_range = (parse_instant(start).isoformat(), parse_instant(end).isoformat())
        except ValueError as exc:
            raise ValueError(f"footer key date_range is not '<start>,<end>': {exc}") from exc
    created = None
    if text(CREATED_KEY):
        try:
            created = datetime.fromisoformat(text(CREATED_KEY)).astimezone(UTC).isoformat()
        except ValueError:
            created = None
    return CollectionInfo(
        name=text(NAME_KEY),
        description=text(DESCRIPTION_KEY),
        data_source=text(DATA_SOURCE_KEY),
        date_range=date_range,
        created=created,
        contract_version="",
    )
