"""Regenerate the built-in demo catalog (needs the ``dev`` extra for rasterio/GDAL).

The demo is a static STAC catalog of real GDAL-written COGs shipped inside the package, so a
new user can materialize the demo source without any network: three months, two scenes a
month, three single-band COGs per scene (256 px, 128-px tiles, one overview level).

    .venv/bin/python -m rasteret_assets.demo.generate
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
BANDS = {"red": 0.3, "green": 0.5, "nir": 0.9}
SCENES = [  # (scene id suffix, UTM zone EPSG, origin x, origin y)
    ("T33UVP", 32633, 399960.0, 5400000.0),
    ("T33UWP", 32633, 499980.0, 5400000.0),
]
MONTHS = (1, 2, 3)
SIZE, BLOCK, PIXEL = 256, 128, 40.0


def _write_band(path: Path, epsg: int, x: float, y: float, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    field = 2000 + 1500 * scale * np.sin(xx / 40.0) * np.cos(yy / 55.0)
    data = (field + rng.normal(0, 4, field.shape)).clip(1, 10000).astype("uint16")
    data[:16, :16] = 0  # a nodata corner
    profile = {
        "driver": "COG",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "dtype": "uint16",
        "crs": f"EPSG:{epsg}",
        "transform": from_origin(x, y, PIXEL, PIXEL),
        "nodata": 0,
        "compress": "DEFLATE",
        "predictor": 2,
        "blocksize": BLOCK,
        "overview_count": 1,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data[np.newaxis])


def _item(scene: str, epsg: int, x: float, y: float, when: datetime, n: int) -> dict:
    item_id = f"DEMO_{scene}_{when:%Y%m%d}"
    folder = CATALOG_DIR / "items" / item_id
    folder.mkdir(parents=True)
    assets = {}
    for band_no, (band, scale) in enumerate(BANDS.items()):
        _write_band(folder / f"{band}.tif", epsg, x, y, scale, seed=n * 10 + band_no)
        assets[band] = {
            "href": f"./{band}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "title": f"{band} reflectance",
        }
    bounds = (x, y - SIZE * PIXEL, x + SIZE * PIXEL, y)
    west, south, east, north = transform_bounds(f"EPSG:{epsg}", "EPSG:4326", *bounds)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": "demo-scenes",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [west, south, east, north],
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": "demo-sat",
            "eo:cloud_cover": float(5 * n % 40),
            "proj:code": f"EPSG:{epsg}",
        },
        "assets": assets,
        "links": [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../../collection.json", "type": "application/json"},
        ],
    }
    (folder / f"{item_id}.json").write_text(json.dumps(item, indent=2) + "\n")
    return item


def main() -> None:
    shutil.rmtree(CATALOG_DIR, ignore_errors=True)
    CATALOG_DIR.mkdir(parents=True)
    items = []
    for month in MONTHS:
        for day, (scene, epsg, x, y) in zip((8, 21), SCENES, strict=True):
            when = datetime(2024, month, day, 10, 20, tzinfo=UTC)
            items.append(_item(scene, epsg, x, y, when, len(items)))
    boxes = np.array([item["bbox"] for item in items])
    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": "demo-scenes",
        "description": "Synthetic 3-band scenes written as GDAL COGs for the rasteret-assets demo.",
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [[*boxes[:, :2].min(0).tolist(), *boxes[:, 2:].max(0).tolist()]]},
            "temporal": {
                "interval": [
                    [items[0]["properties"]["datetime"], items[-1]["properties"]["datetime"]]
                ]
            },
        },
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
        + [{"rel": "item", "href": f"./items/{item['id']}/{item['id']}.json"} for item in items],
    }
    catalog = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "rasteret-assets-demo",
        "description": "The built-in demo source of rasteret-assets.",
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "child", "href": "./collection.json", "type": "application/json"},
        ],
    }
    (CATALOG_DIR / "collection.json").write_text(json.dumps(collection, indent=2) + "\n")
    (CATALOG_DIR / "catalog.json").write_text(json.dumps(catalog, indent=2) + "\n")
    total = sum(p.stat().st_size for p in CATALOG_DIR.rglob("*") if p.is_file())
    print(f"{len(items)} items written to {CATALOG_DIR} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
