"""What an enormous STAC search page costs the client: time to refusal, bytes read, peak RSS.

A search whose second page is a valid FeatureCollection of ``--size-mb`` megabytes, streamed
(chunked, no ``Content-Length``, so the client cannot refuse it up front) by the hostile STAC
server of ``tests/servers/hostile_stac.py``, in a process of its own. The client, in a fresh
process per run so that its peak RSS is its own, searches with ``StacCollectionBuilder``:

* **bounded**: the default ``max_response_bytes`` (32 MiB): the search must fail with
  ``ResponseTooLargeError`` after reading at most the limit;
* **unbounded** (skipped with ``--quick``): the limit raised past the page, i.e. what every
  client did before the limit existed — the whole page read and decoded (its items are one
  item repeated, so converting them is cheap: the cost shown is reading and decoding).

    .venv/bin/python benchmarks/hostile_stac_page.py              # 200 MB page, both runs
    .venv/bin/python benchmarks/hostile_stac_page.py --quick      # 50 MB page, bounded only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.hostile_stac import HostileStac, Page  # noqa: E402

from rasteret_assets.ingest.stac.builder import StacCollectionBuilder  # noqa: E402
from rasteret_assets.ingest.stac.http import ResponseTooLargeError  # noqa: E402

MB = 1024 * 1024
DEMO_ITEM = (
    ROOT / "rasteret_assets/demo/catalog/items/DEMO_T33UVP_20240108/DEMO_T33UVP_20240108.json"
)


def item_bytes(n: int) -> bytes:
    item = json.loads(DEMO_ITEM.read_text())
    item["id"] = f"BIG_{n}"
    for key, asset in item["assets"].items():
        asset["href"] = f"https://cogs.example.com/{key}.tif"
    return json.dumps(item).encode()


def serve(size_mb: int, ready: Connection, stop: Connection) -> None:
    server = HostileStac().start()
    first = {"type": "FeatureCollection", "features": [json.loads(item_bytes(0))]}
    first["links"] = [{"rel": "next", "href": "/search/2"}]
    server.route("/search", Page(body=first))
    one = item_bytes(1)
    server.route(
        "/search/2",
        Page(
            prefix=b'{"type": "FeatureCollection", "links": [], "features": [' + one,
            chunk=b"," + one,
            repeat=size_mb * MB // (len(one) + 1),
            suffix=b"]}",
            announce_length=False,
        ),
    )
    ready.send(server.url)
    stop.recv()
    ready.send(server.bytes_sent.get("/search/2", 0))
    server.stop()


def search(url: str, max_response_bytes: int | None, out: Connection) -> None:
    kwargs = {} if max_response_bytes is None else {"max_response_bytes": max_response_bytes}
    builder = StacCollectionBuilder(
        "big", url, stac_collection="demo-scenes", band_map={"red": "red"}, **kwargs
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        rows = asyncio.run(builder.search_records()).num_rows
        outcome = f"{rows} records"
    except ResponseTooLargeError as exc:
        outcome = f"ResponseTooLargeError ({str(exc)[:60]}...)"
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.send((outcome, elapsed, (peak - before) / 1024))


def run(size_mb: int, label: str, max_response_bytes: int | None) -> None:
    ctx = mp.get_context("spawn")
    ready_here, ready_there = ctx.Pipe()
    stop_here, stop_there = ctx.Pipe()
    server = ctx.Process(target=serve, args=(size_mb, ready_there, stop_there))
    server.start()
    url = ready_here.recv()
    result_here, result_there = ctx.Pipe()
    client = ctx.Process(target=search, args=(url, max_response_bytes, result_there))
    client.start()
    outcome, elapsed, rss_mb = result_here.recv()
    client.join()
    stop_here.send(None)
    sent = ready_here.recv()
    server.join()
    print(
        f"{label:<10} page {size_mb:>4} MB: {outcome}; {elapsed:6.2f} s, "
        f"server sent {sent / MB:7.1f} MB, client peak RSS +{rss_mb:7.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of the huge page")
    parser.add_argument("--quick", action="store_true", help="50 MB page, bounded run only")
    args = parser.parse_args()
    size = 50 if args.quick else args.size_mb
    run(size, "bounded", None)
    if not args.quick:
        run(size, "unbounded", 2 * size * MB)


if __name__ == "__main__":
    main()
