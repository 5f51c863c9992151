"""A static catalog's temporal extent: the months its partitions can have data in.

Read from the collection documents (the root, or its ``child`` links when the root is a
catalog), never from the items: it is one or two small reads at load time, not a walk.
"""

import json
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rasteret_assets.collection import parse_instant
from rasteret_assets.ingest.stac.static_catalog import StaticCatalogError, is_url, resolve_href

#: Catalog documents read at most while looking for collections (the root's children).
MAX_DOCUMENTS = 32
TIMEOUT_S = 10.0


def _read(href: str) -> Mapping[str, Any]:
    try:
        if is_url(href):
            with urllib.request.urlopen(href, timeout=TIMEOUT_S) as response:
                document = json.load(response)
        else:
            document = json.loads(Path(href).read_bytes())
    except (OSError, ValueError) as error:
        raise StaticCatalogError(str(error), href=href, linked_from=None) from error
    if not isinstance(document, Mapping):
        raise StaticCatalogError("not a JSON object", href=href, linked_from=None)
    return document


def _intervals(document: Mapping[str, Any]) -> list[list[Any]]:
    temporal = (document.get("extent") or {}).get("temporal") or {}
    intervals = temporal.get("interval") or []
    return [i for i in intervals if isinstance(i, list) and len(i) == 2]


def temporal_extent(root: str) -> tuple[datetime | None, datetime | None]:
    """``(first, last)`` instant of the catalog's collections; ``None`` where open or unknown."""
    documents = [_read(root)]
    if documents[0].get("type") != "Collection":
        children = [
            resolve_href(root, link["href"])
            for link in documents[0].get("links") or []
            if isinstance(link, Mapping) and link.get("rel") == "child" and link.get("href")
        ]
        documents = [_read(child) for child in children[:MAX_DOCUMENTS]]
    starts: list[datetime] = []
    ends: list[datetime] = []
    open_start = open_end = not documents
    for document in documents:
        intervals = _intervals(document)
        if not intervals:
            open_start = open_end = True
            continue
        # STAC: the first interval spans the whole collection.
        first, last = intervals[0]
        if first is None:
            open_start = True
        else:
            starts.append(parse_instant(first))
        if last is None:
            open_end = True
        else:
            ends.append(parse_instant(last))
    return (
        None if open_start or not starts else min(starts),
        None if open_end or not ends else max(ends),
    )
