"""Asset checks: their specs, and results from the steps' verdicts.

The collection's checks are plain logic in :mod:`rasteret_assets.ingest.month_checks`; this
module only says how Dagster shows them (partitioned like the asset, blocking or warning).
``cog_headers`` has one check of its own: the URLs whose header could not be read.
"""

import dagster as dg

from rasteret_assets.ingest.month_checks import BLOCKING, CHECK_DESCRIPTIONS, CheckOutcome
from rasteret_assets.ingest.steps import HeaderStats

FAILED_URLS = "failed_urls"


def check_specs(
    asset_key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """Partitioned like the asset, so the UI shows each month's own check results."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            description=text,
            blocking=name in BLOCKING,
            partitions_def=partitions,
        )
        for name, text in CHECK_DESCRIPTIONS.items()
    ]


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN
    metadata = dict(outcome.metadata)
    if "coverage" in metadata:
        metadata["coverage"] = dg.MetadataValue.float(float(metadata["coverage"]))
        metadata["coverage_percent"] = f"{float(metadata['coverage'].value):.1%}"
    return dg.AssetCheckResult(
        check_name=outcome.name, passed=outcome.passed, severity=severity, metadata=metadata
    )


def failed_urls_spec(
    asset_key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        FAILED_URLS,
        asset=asset_key,
        description=(
            "Every asset URL's header was read. A warning, not a block: the collection's "
            "header_coverage check decides whether the month can be published."
        ),
        partitions_def=partitions,
    )


def failed_urls(stats: HeaderStats) -> dg.AssetCheckResult:
    """Failed URLs by error class, with a few example URLs (no query strings) per class."""
    return dg.AssetCheckResult(
        check_name=FAILED_URLS,
        passed=not stats.failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed": stats.failed,
            "urls": stats.urls,
            "by_class": dict(stats.errors),
            "examples": dg.MetadataValue.json(stats.examples),
        },
    )
