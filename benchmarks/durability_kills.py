"""Long SIGKILL campaigns: hundreds of killed month writes, locally and on S3 (moto).

The same campaign as ``tests/test_durability.py`` (``tests/durability_harness.py``), with
many more kills: a fork server writes a new version of one month of a three-month
collection, the writer is SIGKILLed at a seeded random moment (half spread over the whole
write, half inside its swap and cleanup), and after every kill the collection is opened with
the normal reader and must hold the complete old or the complete new month, the other months
byte for byte unchanged, and no files but hidden staged ones, which the next finished write
must remove. S3 is a moto server on 127.0.0.1, started here.

``--first-write`` kills the write that creates the month instead of one that replaces it:
before every write the month's data file is deleted (hidden staged files of earlier kills
stay), and after every kill the month must be absent (no rows, no visible file) or the
complete new version.

Reports, per target: kills scheduled and really delivered mid-write, old/new outcomes by the
phase the kill landed in, kill moments by tenth of the calibrated write duration, staged
debris seen and cleaned. Exits non-zero on the first violation.

    .venv/bin/python benchmarks/durability_kills.py                    # 500 kills each
    .venv/bin/python benchmarks/durability_kills.py --kills 200 --target s3
    .venv/bin/python benchmarks/durability_kills.py --quick            # 20 kills each
    .venv/bin/python benchmarks/durability_kills.py --first-write --kills 200
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from durability_harness import (  # noqa: E402
    CampaignReport,
    DurabilityError,
    Target,
    run_campaign,
)
from durability_worker import TARGET_ROWS  # noqa: E402
from servers.moto_s3 import start_moto_s3  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=500, help="kills per target (500)")
    parser.add_argument("--quick", action="store_true", help="20 kills per target")
    parser.add_argument("--target", choices=("local", "s3", "both"), default="both")
    parser.add_argument("--seed", type=int, default=641)
    parser.add_argument(
        "--first-write",
        action="store_true",
        help="kill the write that creates the month (absent before), not one that replaces it",
    )
    parser.add_argument("--rows", type=int, default=TARGET_ROWS, help="rows per local version")
    parser.add_argument("--s3-rows", type=int, default=TARGET_ROWS // 4, help="rows per S3 version")
    args = parser.parse_args()
    kills = 20 if args.quick else args.kills
    try:
        if args.target in ("local", "both"):
            with tempfile.TemporaryDirectory(prefix="durability-") as directory:
                target = Target("local", str(Path(directory) / "collection"))
                report = run_campaign(
                    target,
                    kills=kills,
                    seed=args.seed,
                    rows=args.rows,
                    first_write=args.first_write,
                )
                print(report.summary())
        if args.target in ("s3", "both"):
            print(s3_campaign(kills, args.seed, args.s3_rows, args.first_write).summary())
    except DurabilityError as violation:
        print(f"VIOLATION: {violation}", file=sys.stderr)
        return 1
    return 0


def s3_campaign(kills: int, seed: int, rows: int, first_write: bool) -> CampaignReport:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    moto = start_moto_s3()
    try:
        options = {"endpoint_url": moto.endpoint_url, "key": moto.key_id, "secret": moto.secret}
        uri = f"s3://{moto.private_bucket}/durability/{uuid.uuid4().hex}"
        target = Target("s3", uri, options)
        return run_campaign(target, kills=kills, seed=seed, rows=rows, first_write=first_write)
    finally:
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
