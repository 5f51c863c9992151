"""Which STAC asset holds which band, checked before a single header is fetched.

A wrong band map is the most common way to waste a long build: every header read succeeds
for assets nobody asked for, or nothing is read at all and the collection has empty metadata
columns. Both checks here are pure and cheap — the shape of the map when the builder is
created, and the map against the asset keys the search actually returned before enrichment
starts — so a typo costs seconds, not a month of range requests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_SHOWN_KEYS = 25


class BandMapError(ValueError):
    """The band map cannot work: malformed, or naming assets the items do not have.

    ``missing`` maps each unusable band code to the asset key it asked for; ``available``
    lists the asset keys the items do have, so the message says how to fix the map.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: Mapping[str, str] | None = None,
        available: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.missing = dict(missing or {})
        self.available = available


@dataclass(frozen=True)
class BandMap:
    """``{band_code: asset_key}`` plus the sample index of bands sharing a multi-band asset.

    Several bands may map to one asset (NAIP's four-band ``image``), but only with an explicit
    ``band_index_map`` entry for each of them: without it every band would silently read
    sample 0.
    """

    bands: Mapping[str, str]
    band_index: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bands:
            raise BandMapError("band_map is empty: map at least one band code to an asset key")
        for code, key in self.bands.items():
            if not isinstance(code, str) or not code or not isinstance(key, str) or not key:
                raise BandMapError(
                    f"band_map entry {code!r}: {key!r} must map a non-empty band code to a "
                    "non-empty asset key (both strings)"
                )
        unknown = sorted(set(self.band_index) - set(self.bands))
        if unknown:
            raise BandMapError(
                f"band_index_map names band(s) {unknown} that are not in band_map "
                f"{sorted(self.bands)}; an index for a band that is never read would be ignored"
            )
        for code, index in self.band_index.items():
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise BandMapError(
                    f"band_index_map[{code!r}] = {index!r}: expected a non-negative integer"
                )
        shared: dict[str, list[str]] = defaultdict(list)
        for code, key in self.bands.items():
            shared[key].append(code)
        ambiguous = {
            key: codes
            for key, codes in shared.items()
            if len(codes) > 1 and any(c not in self.band_index for c in codes)
        }
        if ambiguous:
            raise BandMapError(
                f"bands share an asset without a band_index_map entry each: {ambiguous}. "
                "Give every band of a multi-band asset its sample index, e.g. "
                "band_index_map={'R': 0, 'G': 1, 'B': 2}"
            )
        object.__setattr__(self, "bands", MappingProxyType(dict(self.bands)))
        object.__setattr__(self, "band_index", MappingProxyType(dict(self.band_index)))

    @property
    def codes(self) -> list[str]:
        """Band codes in map order: the ``{band}_metadata`` columns a build adds."""
        return list(self.bands)

    def index_of(self, code: str) -> int:
        return self.band_index.get(code, 0)

    def check_against(self, asset_keys: Mapping[str, int], n_items: int) -> None:
        """Raise :class:`BandMapError` for bands whose asset no item has.

        ``asset_keys`` counts, per asset key, the items that have it. A band found in only
        some items is fine (mixed collections, missing files) and becomes null metadata in
        the others; a band found in none is a wrong map.
        """
        missing = {code: key for code, key in self.bands.items() if not asset_keys.get(key)}
        if not missing:
            return
        available = tuple(sorted(asset_keys))
        shown = ", ".join(available[:_SHOWN_KEYS]) or "<none>"
        if len(available) > _SHOWN_KEYS:
            shown += f", ... (+{len(available) - _SHOWN_KEYS} more)"
        raise BandMapError(
            f"band_map asks for asset(s) no item has: "
            f"{', '.join(f'{c!r} -> {k!r}' for c, k in missing.items())} "
            f"(checked {n_items} items). Asset keys present: {shown}. "
            "Pass band_map={band_code: asset_key} with keys from that list.",
            missing=missing,
            available=available,
        )
