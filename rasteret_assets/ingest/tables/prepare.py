"""The "alias → prepare" steps of a record-table build, applied identically to every batch.

Configuration is checked once against the table's schema (:meth:`RecordPreparer.check`), so
a wrong ``href_column`` or a clash between ``href_column`` and an existing ``assets``
column fails before any row is read; after that each batch goes through the same steps:

1. ``column_map`` aliases (:class:`~.record_source.ColumnAliases`);
2. ``assets``: built from ``href_column`` + ``band_index_map`` (one multi-band file, one
   asset per band), or normalised from the table's own ``assets`` column with
   ``band_index_map`` setting the sample of the bands it names;
3. ``url_rewrite_patterns`` on every href, then the bands put in the build's fixed order.

The raw assets (with ``type`` and ``roles``) are read before step 2 replaces them, for
callers deciding which assets look like rasters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from rasteret_assets.contract import ASSETS, ContractError
from rasteret_assets.ingest.normalize.assets import asset_children, normalize_assets
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.ingest.tables.assets import (
    assets_from_hrefs,
    conform_assets,
    rewrite_asset_hrefs,
    set_band_indexes,
)
from rasteret_assets.ingest.tables.raster_assets import raster_mask
from rasteret_assets.ingest.tables.scan import ColumnAliases


class RecordPreparer:
    """Aliases, assets and href rewriting for one build (see the module docstring)."""

    def __init__(
        self,
        aliases: ColumnAliases,
        *,
        href_column: str | None = None,
        band_index_map: Mapping[str, int] | None = None,
        url_rewrite_patterns: Mapping[str, str] | None = None,
    ) -> None:
        self.aliases = aliases
        self.href_column = href_column
        self.band_index_map = dict(band_index_map or {})
        self.url_rewrite_patterns = dict(url_rewrite_patterns or {})
        self.assets_type: pa.DataType | None = None

    @property
    def from_hrefs(self) -> bool:
        return self.href_column is not None

    def check(self, source_schema: pa.Schema) -> list[str]:
        """Validate against the (projected) source schema; return the names after aliasing."""
        self.aliases.check(source_schema.names)
        names = list(source_schema.names) + [
            t for s, t in self.aliases.mapping.items() if s in source_schema.names
        ]
        if self.href_column is not None:
            if self.href_column not in names:
                raise ContractError(
                    f"href_column {self.href_column!r} not found in table. Available: {names}",
                    column=self.href_column,
                )
            if ASSETS in names:
                raise ContractError(
                    f"the table has an {ASSETS!r} column and href_column={self.href_column!r} "
                    f"was given: use one (drop {ASSETS!r} with `columns`, or drop href_column)",
                    column=ASSETS,
                )
        elif ASSETS in names:
            source = self.aliases.source_of(ASSETS)
            self.assets_type = source_schema.field(source).type
        return names

    @property
    def bands_from_schema(self) -> list[str] | None:
        """Asset bands known without reading data; ``None`` when only the data can tell."""
        if self.from_hrefs:
            return list(self.band_index_map)
        if self.assets_type is not None and pa.types.is_struct(self.assets_type):
            return [f.name for f in self.assets_type]
        return None

    def source_columns(self) -> list[str]:
        """Source columns the assets are made from."""
        name = self.href_column if self.from_hrefs else ASSETS
        assert name is not None
        return [self.aliases.source_of(name)]

    def raw_assets(self, table: pa.Table, ids: pa.Array) -> dict[str, pa.Array]:
        """``{band: raw asset per row}`` before normalisation (hrefs in ``href_column`` mode)."""
        if self.from_hrefs:
            assert self.href_column is not None
            hrefs = table.column(self.href_column).combine_chunks()
            return dict.fromkeys(self.band_index_map, hrefs)
        return asset_children(table.column(ASSETS).combine_chunks(), ids, ASSETS)

    def raster_masks(
        self, table: pa.Table, ids: pa.Array, bands: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Per band, which rows hold an asset that looks like a raster.

        ``href_column`` is declared to hold COG URLs, so every non-null href counts.
        """
        raw = self.raw_assets(table, ids)
        masks = {}
        for band in bands:
            values = raw.get(band)
            if values is None:
                masks[band] = np.zeros(table.num_rows, dtype=bool)
            elif self.from_hrefs:
                masks[band] = values.is_valid().to_numpy(zero_copy_only=False)
            else:
                masks[band] = raster_mask(values)
        return masks

    def with_assets(self, table: pa.Table, ids: pa.Array, bands: Sequence[str]) -> pa.Table:
        """``table`` with ``assets`` in the contract shape, rewritten, in ``bands`` order."""
        if self.from_hrefs:
            assert self.href_column is not None
            assets = assets_from_hrefs(
                table.column(self.href_column).combine_chunks(),
                self.band_index_map,
                ids,
                self.href_column,
            )
        else:
            assets = normalize_assets(table.column(ASSETS).combine_chunks(), ids, ASSETS)
            # Conform first: a map/JSON batch may lack a band the band_index_map names.
            assets = set_band_indexes(conform_assets(assets, bands), self.band_index_map)
        assets = conform_assets(rewrite_asset_hrefs(assets, self.url_rewrite_patterns), bands)
        return with_column(table, ASSETS, assets)
