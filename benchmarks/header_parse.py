"""Parser and header-row cost per header (µs of CPU) and reads/bytes per file for several
first-read sizes.

Corpus: the GDAL-written COG variants the tests generate (tests/tiff/cog_corpus.py) plus the
real-world TIFFs of ../shared/fixtures/tiff when present. Striped files end in ``not_tiled``
after their first IFD and are reported separately.

    .venv/bin/python benchmarks/header_parse.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiff.cog_corpus import generate_corpus  # noqa: E402

from rasteret_assets.ingest.headers.engine import HeaderOutcome  # noqa: E402
from rasteret_assets.ingest.headers.rows import outcomes_table  # noqa: E402
from rasteret_assets.tiff import (  # noqa: E402
    ByteBuffer,
    NotTiledError,
    TiffError,
    TiffHeader,
    parse_header,
    parser,
    read_header_from_path,
)

FIXTURES = ROOT.parent / "shared" / "fixtures" / "tiff"
FIRST_READS = (16384, 65536, 262144)


def parse_cost_us(data: bytes, repeats: int, *, new_layout: bool) -> float:
    """Median CPU µs to parse a header whose bytes are all in memory (no I/O).

    ``new_layout`` forgets the parser's layout plans before every parse: the cost of the
    first file of a layout. Otherwise every parse after the first finds its IFD tables
    planned, as the later files of a collection whose files share their layout do.
    """
    samples = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(repeats):
            if new_layout:
                parser._PLANS.clear()
            parse_header(ByteBuffer.from_bytes(data, complete=True))
        samples.append((time.process_time() - started) / repeats * 1e6)
    return statistics.median(samples)


def rows_cost_us(headers: list[TiffHeader], batch: int = 1000) -> float:
    """Median CPU µs per header to turn parsed headers into header rows (Arrow), in batches."""
    outcomes = [
        HeaderOutcome(f"https://h.example/{i}.tif", "ok", None, 1, 1, 1, 0.0, "e", 1, header)
        for i, header in enumerate(headers * max(1, batch // max(1, len(headers))))
    ]
    samples = []
    for _ in range(5):
        started = time.process_time()
        for start in range(0, len(outcomes), batch):
            outcomes_table(outcomes[start : start + batch])
        samples.append((time.process_time() - started) / len(outcomes) * 1e6)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = [
            (f"gdal/{name}", path, name.startswith("cog-"))
            for name, path in generate_corpus(Path(tmp))
        ]
        if FIXTURES.is_dir():
            corpus += [
                (str(p.relative_to(FIXTURES)), p, False) for p in sorted(FIXTURES.rglob("*.tif*"))
            ]
        header = f"{'file':58s} {'IFDs':>4s} {'µs new':>7s} {'µs seen':>7s} " + " ".join(
            f"{size // 1024:>4d}K:reads/KiB" for size in FIRST_READS
        )
        print(header)
        costs, seen_costs, striped, failed = [], [], 0, []
        multi_read: dict[int, list[str]] = {s: [] for s in FIRST_READS}
        headers: list[TiffHeader] = []
        for name, path, gdal_cog in corpus:
            row = []
            try:
                for size in FIRST_READS:
                    parsed, stats = read_header_from_path(path, first_read=size)
                    row.append(f"{stats.reads:>5d}/{stats.bytes_read / 1024:<8.0f}")
                    if gdal_cog and stats.reads > 1:
                        multi_read[size].append(name)
            except NotTiledError:
                striped += 1
                continue
            except TiffError as error:
                failed.append(f"{name}: {error.error_class}")
                continue
            cost = parse_cost_us(path.read_bytes(), 200, new_layout=True)
            seen = parse_cost_us(path.read_bytes(), 200, new_layout=False)
            costs.append(cost)
            seen_costs.append(seen)
            headers.append(parsed)
            print(f"{name[:58]:58s} {len(parsed.ifds):4d} {cost:7.1f} {seen:7.1f} " + " ".join(row))
        print(
            f"\n{len(costs)} tiled files parsed; {striped} striped (not_tiled); "
            f"errors: {failed or 'none'}"
        )
        for label, values in (("a new layout", costs), ("a layout seen before", seen_costs)):
            print(
                f"parse CPU per header, {label}: median {statistics.median(values):.1f} µs, "
                f"mean {statistics.mean(values):.1f} µs, max {max(values):.1f} µs"
            )
        print(f"header rows (Arrow) CPU per header: {rows_cost_us(headers):.1f} µs")
        gdal_total = sum(1 for _, _, g in corpus if g)
        for size in FIRST_READS:
            print(
                f"first read {size // 1024:>3d} KiB: GDAL files needing more than one read: "
                f"{len(multi_read[size])} of {gdal_total} {multi_read[size] or ''}"
            )


if __name__ == "__main__":
    main()
