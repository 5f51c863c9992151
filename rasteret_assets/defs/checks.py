"""Asset checks of a month's collection: their specs, and results from the month's verdicts.

The checks themselves are plain logic in :mod:`rasteret_assets.ingest.month_checks`; this
module only says how Dagster shows them (partitioned like the asset, blocking or warning).
"""

from __future__ import annotations

import dagster as dg

from rasteret_assets.ingest.month_checks import BLOCKING, CHECK_DESCRIPTIONS, CheckOutcome


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
    return dg.AssetCheckResult(
        check_name=outcome.name, passed=outcome.passed, severity=severity, metadata=metadata
    )
