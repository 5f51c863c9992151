"""``add_band_metadata_columns`` takes the reference's processed items (plain metadata values,
the shape rasteret's own enrichment produces) as well as parsed headers, and both give the
same rasteret fields."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from rasteret_assets.contract import RASTERET_METADATA_FIELDS
from rasteret_assets.ingest import add_band_metadata_columns
from rasteret_assets.tiff import parse_tiff_bytes

COG = "rio-tiler/cog.tif"


def processed_item(record_id: str, band: str, parsed: dict) -> dict:
    """A processed item as rasteret 0.4.1's enrichment makes it: ``width``/``height`` and the
    other fields by their struct names, band-sliced tile tables."""
    item = {name: parsed[name] for name in (f.name for f in RASTERET_METADATA_FIELDS)}
    item["width"] = item.pop("image_width")
    item["height"] = item.pop("image_height")
    return {"record_id": record_id, "band": band, **item}


def test_processed_items_and_parsed_headers_give_the_same_fields(tiff_fixtures: Path) -> None:
    header = parse_tiff_bytes((tiff_fixtures / COG).read_bytes())
    table = pa.table({"id": ["a", "b", "c"]})
    from_header = add_band_metadata_columns(
        table, ["red"], [{"record_id": "b", "band": "red", "header": header}]
    )
    parsed = from_header.column("red_metadata")[1].as_py()
    assert parsed["image_width"] == 2658 and parsed["tile_offsets"]
    from_items = add_band_metadata_columns(
        table,
        ["red", "nir"],
        [processed_item("c", "red", parsed), processed_item("a", "nir", parsed)],
    )
    red = from_items.column("red_metadata").to_pylist()
    assert red[0] is None and red[1] is None
    names = [f.name for f in RASTERET_METADATA_FIELDS]
    assert {k: red[2][k] for k in names} == {k: parsed[k] for k in names}
    assert (
        from_items.column("nir_metadata")[0]["tile_byte_counts"].as_py()
        == (parsed["tile_byte_counts"])
    )


def test_both_shapes_mix_in_one_call(tiff_fixtures: Path) -> None:
    header = parse_tiff_bytes((tiff_fixtures / COG).read_bytes())
    table = pa.table({"id": ["a", "b"]})
    parsed = add_band_metadata_columns(
        table, ["red"], [{"record_id": "a", "band": "red", "header": header}]
    ).column("red_metadata")[0]
    out = add_band_metadata_columns(
        table,
        ["red"],
        [
            {"record_id": "a", "band": "red", "header": header},
            processed_item("b", "red", parsed.as_py()),
        ],
    )
    widths = [v["image_width"] for v in out.column("red_metadata").to_pylist()]
    assert widths == [2658, 2658]
