"""THE join of parsed headers back to records: every door into the project ends here.

The reference functions, both builders and the Dagster collection step all hold the same
two things — records with an ``assets`` column, and header rows (:mod:`.rows`, one per URL)
— and call :func:`join_headers`. So the same files give the same ``{band}_metadata`` and the
same ``proj:epsg``/``crs`` whichever door a user came in by.

The join is Arrow-native: an asset's href becomes its URL identity (:func:`url_identity`),
is looked up among the header rows' ``url`` column (``index_in``), and the band's metadata is
gathered from the header rows' IFD lists with numpy index arithmetic — no per-header Python
object is made, so joining costs microseconds per asset and memory stays proportional to the
batch joined.

Rules, each applied here and nowhere else:

* a use is ``(row, band, band_index)``; ``band_index`` past the file's samples leaves the
  band null and is reported (record id, band, URL);
* the header decides ``proj:epsg``/``crs`` only for records that declare no CRS of their own
  (item properties are the catalog's contract; the header is the fallback);
* a record whose bands' headers disagree on the CRS cannot be read as one raster stack:
  the library refuses it as the reference does (:class:`CrsConflictError`, a ``ValueError``
  naming up to five records); the Dagster step leaves it out of the month instead
  (``on_crs_conflict="drop"``) and counts it. Either way ``crs_conflicts`` reports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import (
    ASSETS,
    BAND_METADATA_TYPE,
    CRS,
    ID,
    LEVEL_TYPE,
    PROJ_EPSG,
    metadata_column,
)
from rasteret_assets.ingest.headers.rows import JOIN_COLUMNS, url_identity
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.ingest.normalize.crs import SOURCE_COLUMNS as CRS_SOURCE_COLUMNS
from rasteret_assets.ingest.normalize.crs import raster_crs
from rasteret_assets.ingest.normalize.table import record_ids
from rasteret_assets.storage import redact_url

_MASK_BIT = 4
_OVERVIEW_BIT = 1
#: Examples kept per kind of problem; beyond this only the counts grow.
MAX_EXAMPLES = 20
#: Records named in a :class:`CrsConflictError` (the reference names up to five).
ERROR_EXAMPLES = 5

CrsConflictPolicy = Literal["raise", "drop"]


class CrsConflictError(ValueError):
    """Records whose bands' headers name different CRSs (the reference's ``ValueError``)."""

    def __init__(self, count: int, examples: Sequence[str]) -> None:
        self.count = count
        self.examples = list(examples)
        super().__init__(
            f"Conflicting CRS values detected during enrichment for {count} record(s): "
            f"{'; '.join(self.examples)}. Ensure all assets in a record share the same "
            "proj:epsg."
        )


_IMAGE_FIELDS = (
    "image_width",
    "image_height",
    "tile_width",
    "tile_height",
    "dtype",
    "predictor",
    "compression",
    "samples_per_pixel",
    "planar_configuration",
    "photometric",
    "extra_samples",
    "jpeg_tables",
)


@dataclass
class JoinReport:
    """What a join did: per band, assets with a URL and assets given metadata; problems."""

    assets: dict[str, int] = field(default_factory=dict)
    joined: dict[str, int] = field(default_factory=dict)
    band_index_errors: int = 0
    band_index_examples: list[str] = field(default_factory=list)
    crs_conflicts: int = 0
    crs_conflict_examples: list[str] = field(default_factory=list)

    @property
    def total_assets(self) -> int:
        return sum(self.assets.values())

    @property
    def total_joined(self) -> int:
        return sum(self.joined.values())

    def merge(self, other: JoinReport) -> None:
        """Add ``other`` (the report of another batch of the same build)."""
        for band, count in other.assets.items():
            self.assets[band] = self.assets.get(band, 0) + count
        for band, count in other.joined.items():
            self.joined[band] = self.joined.get(band, 0) + count
        self.band_index_errors += other.band_index_errors
        room = MAX_EXAMPLES - len(self.band_index_examples)
        self.band_index_examples += other.band_index_examples[: max(room, 0)]
        self.crs_conflicts += other.crs_conflicts
        room = MAX_EXAMPLES - len(self.crs_conflict_examples)
        self.crs_conflict_examples += other.crs_conflict_examples[: max(room, 0)]


@dataclass
class HeaderIndex:
    """Successful header rows, ready to be joined: the URL column and IFD positions."""

    rows: pa.Table
    urls: pa.Array
    ifds: pa.StructArray
    ifd_offsets: np.ndarray
    image: np.ndarray
    samples: np.ndarray

    @classmethod
    def build(cls, headers: pa.Table) -> HeaderIndex:
        """Index the ``ok`` rows of ``headers`` (a table with :data:`JOIN_COLUMNS`)."""
        ok = headers.select(list(JOIN_COLUMNS)).filter(pc.equal(headers.column("status"), "ok"))
        rows = ok.combine_chunks()
        lists = rows.column("ifds").chunk(0) if rows.num_rows else pa.array([], ok["ifds"].type)
        offsets = lists.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]
        ifds = lists.flatten()
        nst = ifds.field("new_subfile_type").to_numpy(zero_copy_only=False).astype(np.int64)
        main = (nst & (_MASK_BIT | _OVERVIEW_BIT)) == 0
        image = _first_in_each(main, offsets)
        samples = ifds.field("samples_per_pixel").to_numpy(zero_copy_only=False)
        return cls(
            rows=rows,
            urls=_one_chunk(rows.column("url")),
            ifds=ifds,
            ifd_offsets=offsets,
            image=image,
            samples=samples[image].astype(np.int64) if len(image) else np.empty(0, np.int64),
        )

    def lookup(self, keys: pa.Array) -> np.ndarray:
        """Header row of each key (``-1`` where there is none)."""
        found = pc.index_in(keys, value_set=self.urls)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def join_headers(
    records: pa.Table,
    headers: pa.Table | HeaderIndex,
    bands: Sequence[str],
    *,
    uses: Mapping[str, np.ndarray] | None = None,
    report: JoinReport | None = None,
    on_crs_conflict: CrsConflictPolicy = "raise",
) -> tuple[pa.Table, JoinReport]:
    """``records`` plus one ``{band}_metadata`` column per band, and ``proj:epsg``/``crs``.

    ``headers`` are header rows (:mod:`.rows`; failures are ignored) or an index of them.
    A band a record has no URL for, whose URL has no successful header, or whose
    ``band_index`` is out of range, is null. ``uses`` ``{band: bool per row}`` limits which
    assets count as used (e.g. only those that look like rasters). ``report`` accumulates
    across batches. Records whose bands disagree on the CRS raise :class:`CrsConflictError`,
    or with ``on_crs_conflict="drop"`` are left out of the returned table (and counted).
    """
    index = headers if isinstance(headers, HeaderIndex) else HeaderIndex.build(headers)
    batch = JoinReport()
    assets = _one_chunk(records.column(ASSETS))
    present = {f.name for f in assets.type}
    n = records.num_rows
    picked: list[np.ndarray] = []
    table = records
    for band in bands:
        if band not in present:
            batch.assets[band] = batch.joined[band] = 0
            table = with_column(table, metadata_column(band), pa.nulls(n, BAND_METADATA_TYPE))
            continue
        refs = assets.field(band)
        hrefs = pc.struct_field(refs, "href")
        used = refs.is_valid()
        if uses is not None and band in uses:
            used = pc.and_(used, pa.array(uses[band]))
        if used.false_count:
            hrefs = pc.if_else(used, hrefs, pa.scalar(None, hrefs.type))
        rows = index.lookup(url_identity(hrefs))
        band_index = _band_indexes(refs)
        samples = index.samples[rows] if len(index.samples) else np.zeros(len(rows), np.int64)
        out_of_range = (rows >= 0) & (band_index >= samples)
        if out_of_range.any():
            _report_band_index(batch, records, hrefs, band, band_index, rows, out_of_range, index)
            rows = np.where(out_of_range, -1, rows)
        batch.assets[band] = len(hrefs) - hrefs.null_count
        batch.joined[band] = int((rows >= 0).sum())
        picked.append(rows)
        table = with_column(
            table, metadata_column(band), band_metadata_column(index, rows, band_index)
        )
    table, conflict = _with_header_crs(table, index, picked, batch)
    if report is not None:
        report.merge(batch)
    if conflict is not None:
        if on_crs_conflict == "raise":
            raise CrsConflictError(
                batch.crs_conflicts, batch.crs_conflict_examples[:ERROR_EXAMPLES]
            )
        table = table.filter(pa.array(~conflict))
    return table, batch


def band_metadata_column(
    index: HeaderIndex, rows: np.ndarray, band_index: np.ndarray
) -> pa.StructArray:
    """``{band}_metadata`` per output row from header row ``rows[i]`` (``-1``: null)."""
    valid = rows >= 0
    picks = rows[valid]
    bands = band_index[valid]
    image = index.image[picks]
    ifds = index.ifds
    header = index.rows
    values: dict[str, pa.Array] = {
        name: ifds.field(name).take(pa.array(image)) for name in _IMAGE_FIELDS
    }
    take = pa.array(picks)
    for name in ("transform", "pixel_scale", "tiepoint", "nodata", "crs"):
        values[name] = _one_chunk(header.column(name)).take(take)
    values["source_etag"] = _one_chunk(header.column("etag")).take(take)
    values["source_size"] = _one_chunk(header.column("size")).take(take)
    offsets, byte_counts = _band_tiles(ifds, image, bands)
    values["tile_offsets"], values["tile_byte_counts"] = offsets, byte_counts
    values["overviews"] = _levels(index, picks, bands, masks=False)
    values["masks"] = _levels(index, picks, bands, masks=True)
    present = pa.StructArray.from_arrays(
        [values[f.name].cast(f.type) for f in BAND_METADATA_TYPE], fields=list(BAND_METADATA_TYPE)
    )
    if valid.all():
        return present
    positions = np.full(len(rows), -1, dtype=np.int64)
    positions[valid] = np.arange(len(picks))
    return present.take(pa.array(positions, mask=~valid))


def _first_in_each(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per list, the position of its first flagged element (its first element if none is)."""
    starts = offsets[:-1]
    if not len(starts):
        return np.empty(0, np.int64)
    candidates = np.where(flags, np.arange(len(flags)), np.iinfo(np.int64).max)
    counts = np.diff(offsets)
    first = starts.copy()
    nonempty = counts > 0
    if nonempty.any():
        found = np.minimum.reduceat(candidates, starts[nonempty])
        first[nonempty] = np.where(found == np.iinfo(np.int64).max, starts[nonempty], found)
    return first


def _band_tiles(
    ifds: pa.StructArray, positions: np.ndarray, bands: np.ndarray
) -> tuple[pa.ListArray, pa.ListArray]:
    """Tile offsets and byte counts of band ``bands[i]`` of IFD ``positions[i]``.

    With PlanarConfiguration=2 each band owns a contiguous block of the tile tables; with
    pixel interleaving every band lives in the same tiles.
    """

    def field(name: str) -> np.ndarray:
        return ifds.field(name).to_numpy(zero_copy_only=False).astype(np.int64)[positions]

    across = -(-field("image_width") // np.maximum(field("tile_width"), 1))
    down = -(-field("image_height") // np.maximum(field("tile_height"), 1))
    per_band = across * down
    planar = field("planar_configuration") == 2
    return tuple(  # type: ignore[return-value]
        _slice_lists(
            ifds.field(name), positions, np.where(planar, bands * per_band, 0), per_band, planar
        )
        for name in ("tile_offsets", "tile_byte_counts")
    )


def _slice_lists(
    lists: pa.ListArray,
    positions: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    sliced: np.ndarray,
) -> pa.ListArray:
    """``lists[positions[i]][starts[i]:starts[i]+lengths[i]]`` where ``sliced``, else whole."""
    offsets = lists.offsets.to_numpy().astype(np.int64)
    values = lists.flatten().to_numpy(zero_copy_only=False)
    base = offsets[:-1] - offsets[0]
    full = np.diff(offsets)[positions]
    begin = np.where(sliced, np.minimum(starts, full), 0)
    count = np.where(sliced, np.clip(full - begin, 0, lengths), full)
    out_offsets = np.zeros(len(positions) + 1, dtype=np.int64)
    np.cumsum(count, out=out_offsets[1:])
    first = base[positions] + begin
    gather = np.repeat(first - out_offsets[:-1], count) + np.arange(out_offsets[-1])
    return pa.LargeListArray.from_arrays(
        pa.array(out_offsets), pa.array(values[gather], pa.int64())
    ).cast(pa.list_(pa.int64()))


def _levels(
    index: HeaderIndex, picks: np.ndarray, bands: np.ndarray, *, masks: bool
) -> pa.ListArray:
    """Per output row, its file's overview levels (sliced for its band) or mask levels."""
    starts = index.ifd_offsets[picks]
    counts = index.ifd_offsets[picks + 1] - starts
    owner = np.repeat(np.arange(len(picks)), counts)
    offsets = np.zeros(len(picks) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    positions = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
    nst = index.ifds.field("new_subfile_type").to_numpy(zero_copy_only=False)[positions]
    is_mask = (nst.astype(np.int64) & _MASK_BIT) != 0
    keep = is_mask if masks else (~is_mask & (positions != index.image[picks][owner]))
    positions, owner = positions[keep], owner[keep]
    band = np.zeros(len(positions), np.int64) if masks else bands[owner]
    level_offsets = np.zeros(len(picks) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(picks)), out=level_offsets[1:])
    tile_offsets, byte_counts = _band_tiles(index.ifds, positions, band)
    take = pa.array(positions)
    levels = pa.StructArray.from_arrays(
        [
            index.ifds.field(f.name).take(take).cast(f.type)
            if f.name not in ("tile_offsets", "tile_byte_counts")
            else (tile_offsets if f.name == "tile_offsets" else byte_counts)
            for f in LEVEL_TYPE
        ],
        fields=list(LEVEL_TYPE),
    )
    return pa.ListArray.from_arrays(pa.array(level_offsets.astype(np.int32)), levels)


def _band_indexes(refs: pa.StructArray) -> np.ndarray:
    if "band_index" not in {f.name for f in refs.type}:
        return np.zeros(len(refs), np.int64)
    values = pc.fill_null(pc.struct_field(refs, "band_index"), 0)
    return values.to_numpy(zero_copy_only=False).astype(np.int64)


def _report_band_index(
    report: JoinReport,
    records: pa.Table,
    hrefs: pa.Array,
    band: str,
    band_index: np.ndarray,
    rows: np.ndarray,
    wrong: np.ndarray,
    index: HeaderIndex,
) -> None:
    where = np.flatnonzero(wrong)
    report.band_index_errors += len(where)
    ids = records.column(ID)
    for row in where[: MAX_EXAMPLES - len(report.band_index_examples)]:
        report.band_index_examples.append(
            f"record {ids[int(row)].as_py()!r} band {band!r}: band_index {band_index[row]} but "
            f"{redact_url(hrefs[int(row)].as_py())} has {index.samples[rows[row]]} samples"
        )


def _with_header_crs(
    table: pa.Table, index: HeaderIndex, picked: list[np.ndarray], report: JoinReport
) -> tuple[pa.Table, np.ndarray | None]:
    """``proj:epsg``/``crs`` from the record's own CRS columns, else from its headers; and
    which rows' bands disagree on the CRS (``None`` when none do)."""
    if not picked:
        return table, None
    epsg_col = _one_chunk(index.rows.column("epsg"))
    crs_col = _one_chunk(index.rows.column("crs"))
    per_band = []
    for rows in picked:
        take = pa.array(rows, mask=rows < 0)
        per_band.append((epsg_col.take(take), crs_col.take(take)))
    header_crs = pc.coalesce(*(c for _, c in per_band))
    header_epsg = pc.coalesce(*(e for e, _ in per_band))
    conflict = _conflicts(table, [c for _, c in per_band], header_crs, report)
    own = [n for n in CRS_SOURCE_COLUMNS if n in table.column_names]
    if own:
        ids = record_ids(_one_chunk(table.column(ID)))
        epsg, crs = raster_crs({n: _one_chunk(table.column(n)) for n in own}, ids)
        declared = crs.is_valid()
        epsg = pc.if_else(declared, epsg, header_epsg)
        crs = pc.if_else(declared, crs, header_crs)
    else:
        epsg, crs = header_epsg, header_crs
    table = with_column(table, PROJ_EPSG, epsg.cast(pa.int32()))
    return with_column(table, CRS, crs.cast(pa.string())), conflict


def _conflicts(
    table: pa.Table, band_crs: list[pa.Array], first: pa.Array, report: JoinReport
) -> np.ndarray | None:
    """Rows whose bands' headers name different CRSs, reported with what each band says."""
    if len(band_crs) < 2:
        return None
    conflict = np.zeros(table.num_rows, dtype=bool)
    for crs in band_crs:
        differs = pc.fill_null(pc.not_equal(crs, first), False)
        conflict |= differs.to_numpy(zero_copy_only=False)
    if not conflict.any():
        return None
    report.crs_conflicts += int(conflict.sum())
    ids = table.column(ID)
    for row in np.flatnonzero(conflict)[:MAX_EXAMPLES]:
        seen = dict.fromkeys(c[int(row)].as_py() for c in band_crs if c[int(row)].is_valid)
        report.crs_conflict_examples.append(f"{ids[int(row)].as_py()!r} ({' vs '.join(seen)})")
    return conflict


def _one_chunk(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
