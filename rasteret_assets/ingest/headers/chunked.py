"""COG header enrichment of a record table that arrives in chunks.

:func:`~.enrich.enrich_table` enriches one table it holds whole. A streamed build sees the
table a chunk at a time, so this module keeps what must outlive a chunk:

* one storage backend (connections are reused across chunks);
* a byte-bounded cache of header rows by URL: record tables often point many rows at the
  same file (a mosaic, a DEM tile, one multi-band file per scene), and a URL read in one
  chunk is not read again in the next — failures included, so a dead URL costs one set of
  retries per build, not one per chunk;
* the account of what happened: per-status counts and one light row per URL read (URL,
  status, error, cost — no tile tables, so it stays small), the join's report, and how many
  assets were skipped because they do not look like rasters.

Each chunk goes through the one join, :func:`.join.join_headers`, like every other door.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ASSETS
from rasteret_assets.ingest.headers.enrich import read_header_rows
from rasteret_assets.ingest.headers.join import JoinReport, join_headers
from rasteret_assets.ingest.headers.rows import (
    HEADER_STATUS_SCHEMA,
    add_urls,
    outcomes_table,
    status_counts,
)
from rasteret_assets.storage import RetryPolicy, StorageBackend

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


class HeaderRowCache:
    """Recently read header rows by URL identity, at most ``max_bytes`` of Arrow in total.

    Rows are kept in the tables they arrived in; the oldest table is dropped first.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._tables: OrderedDict[int, pa.Table] = OrderedDict()
        self._where: dict[str, tuple[int, int]] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._where)

    def put(self, rows: pa.Table) -> None:
        if rows.num_rows == 0 or rows.nbytes > self.max_bytes:
            return
        number, self._next = self._next, self._next + 1
        self._tables[number] = rows
        self.nbytes += rows.nbytes
        for position, url in enumerate(rows.column("url").to_pylist()):
            self._where[url] = (number, position)
        while self.nbytes > self.max_bytes:
            old, table = self._tables.popitem(last=False)
            self.nbytes -= table.nbytes
            for url in table.column("url").to_pylist():
                if self._where.get(url, (None,))[0] == old:
                    del self._where[url]

    def split(self, urls: Sequence[str]) -> tuple[pa.Table | None, list[str]]:
        """The cached rows of ``urls`` and the URLs not cached."""
        by_table: dict[int, list[int]] = {}
        missing = []
        for url in urls:
            found = self._where.get(url)
            if found is None:
                missing.append(url)
            else:
                by_table.setdefault(found[0], []).append(found[1])
        if not by_table:
            return None, missing
        parts = [self._tables[n].take(pa.array(rows)) for n, rows in by_table.items()]
        return pa.concat_tables(parts), missing


@dataclass
class EnrichmentReport:
    """What enrichment did over a whole build."""

    bands: list[str]
    status_counts: Counter[str] = field(default_factory=Counter)
    #: URLs read from storage (each once per build while it stays in the cache).
    headers_fetched: int = 0
    #: URL look-ups answered by the cache instead of storage.
    cache_hits: int = 0
    #: Assets of enriched bands not read because they do not look like rasters.
    skipped_non_raster: int = 0
    join: JoinReport = field(default_factory=JoinReport)
    _chunks: list[pa.Table] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> int:
        return self.status_counts.get("ok", 0)

    @property
    def failed(self) -> int:
        return sum(self.status_counts.values()) - self.ok

    @property
    def band_index_error_count(self) -> int:
        return self.join.band_index_errors

    @property
    def band_index_errors(self) -> list[str]:
        return self.join.band_index_examples

    @property
    def outcomes(self) -> pa.Table:
        """One row per URL read (:data:`HEADER_STATUS_SCHEMA`)."""
        if not self._chunks:
            return HEADER_STATUS_SCHEMA.empty_table()
        return pa.concat_tables(self._chunks)

    def record(self, rows: pa.Table) -> None:
        self.headers_fetched += rows.num_rows
        self.status_counts.update(status_counts(rows))
        self._chunks.append(rows.select(HEADER_STATUS_SCHEMA.names))


class ChunkEnricher:
    """Adds ``{band}_metadata`` (and the header CRS) to chunk after chunk of one build.

    ``backend`` is used as given and left open. ``masks`` given to :meth:`enrich` restrict
    each band to the rows whose asset looks like a raster (see :mod:`.raster_assets`).
    """

    def __init__(
        self,
        bands: Sequence[str],
        backend: StorageBackend,
        *,
        max_concurrent: int,
        retry: RetryPolicy | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        workers: int | None = None,
    ) -> None:
        if not bands:
            raise ValueError("no bands to enrich")
        self.bands = list(bands)
        self.backend = backend
        self.max_concurrent = max_concurrent
        self.retry = retry
        self.workers = workers
        self.cache = HeaderRowCache(cache_bytes)
        self.report = EnrichmentReport(bands=list(bands))

    async def enrich(
        self, table: pa.Table, masks: Mapping[str, np.ndarray] | None = None
    ) -> pa.Table:
        """``table`` (normalised ``assets``) plus one ``{band}_metadata`` column per band."""
        urls = self._urls(table, masks)
        cached, missing = self.cache.split(list(urls))
        self.report.cache_hits += len(urls) - len(missing)
        parts = [] if cached is None else [cached]
        if missing:
            fetched = await read_header_rows(
                [urls[key] for key in missing],
                self.backend,
                max_concurrent=self.max_concurrent,
                retry=self.retry,
                workers=self.workers,
            )
            self.cache.put(fetched)
            self.report.record(fetched)
            parts.append(fetched)
        rows = pa.concat_tables(parts) if parts else outcomes_table([])
        joined, _ = join_headers(table, rows, self.bands, uses=masks, report=self.report.join)
        return joined

    def _urls(self, table: pa.Table, masks: Mapping[str, np.ndarray] | None) -> dict[str, str]:
        """``{identity: href}`` of every asset of the chunk that is read."""
        assets = table.column(ASSETS).combine_chunks()
        present = {f.name for f in assets.type}
        urls: dict[str, str] = {}
        for band in self.bands:
            if band not in present:
                continue
            hrefs = pc.struct_field(assets.field(band), "href")
            allowed = None if masks is None else masks.get(band)
            if allowed is not None:
                has_href = hrefs.is_valid().to_numpy(zero_copy_only=False)
                self.report.skipped_non_raster += int((has_href & ~allowed).sum())
                hrefs = hrefs.filter(pa.array(allowed))
            add_urls(urls, hrefs)
        return urls
