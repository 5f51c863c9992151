"""The rasteret 0.4.1 side of the round trip, run by the Python 3.12 interpreter.

Only rasteret's public API is used, the way a rasteret user would. It runs in another
environment, so it imports nothing from this project (and nothing from pytest); results go
to a JSON file and pixels to an ``.npz`` file the test reads back.

    python rasteret_side.py load <collection dir> <request.json> <result.json> <pixels.npz>
    python rasteret_side.py build <records.parquet> <request.json> <result.json>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasteret
import shapely
from rasteret.ingest.normalize import build_collection_from_table


def describe(collection: Any) -> dict[str, Any]:
    """What rasteret reports about a collection it loaded or built."""

    def iso(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "name": collection.name,
        "data_source": collection.data_source,
        "description": collection.description,
        "start_date": iso(collection.start_date),
        "end_date": iso(collection.end_date),
        "bands": collection.bands,
        "records": len(collection),
    }


def load(path: str, request: dict[str, Any], result: Path, pixels: Path) -> None:
    """``rasteret.load`` a collection, then ``get_numpy`` each requested window."""
    collection = rasteret.load(path)
    arrays = {}
    for window in request["windows"]:
        arrays[window["id"]] = collection.get_numpy(
            shapely.box(*window["box"]), [window["band"]], geometry_crs=window["epsg"]
        )
    np.savez(pixels, **arrays)
    result.write_text(json.dumps(describe(collection)))


def build(records: str, request: dict[str, Any], result: Path) -> None:
    """``rasteret.build_from_table`` with COG enrichment, then the same table through
    ``build_collection_from_table`` with a description and a date range (which
    ``build_from_table`` does not take)."""
    built = rasteret.build_from_table(
        records,
        name=request["name"],
        data_source=request["data_source"],
        workspace_dir=request["records_dir"],
        enrich_cog=True,
        band_codes=request["bands"],
    )
    exported = build_collection_from_table(
        built.dataset.to_table(),
        name=request["name"],
        description=request["description"],
        data_source=request["data_source"],
        date_range=tuple(request["date_range"]),
        workspace_dir=request["exported_dir"],
    )
    result.write_text(json.dumps({"built": describe(built), "exported": describe(exported)}))


def main(argv: list[str]) -> None:
    command, source, request = argv[0], argv[1], json.loads(Path(argv[2]).read_text())
    if command == "load":
        load(source, request, Path(argv[3]), Path(argv[4]))
    elif command == "build":
        build(source, request, Path(argv[3]))
    else:
        raise SystemExit(f"unknown command {command!r}; use load or build")


if __name__ == "__main__":
    main(sys.argv[1:])
