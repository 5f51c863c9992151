"""First-read sizes learned during a run: about one request per file, few bytes past the header.

A fixed 64 KiB first read costs ~43 KiB per file where the headers of a typical Sentinel-2
mix reach ~5 KiB into the file; a fixed small one costs a second round trip for every file
with a larger header. The files of one host (a bucket, one collection's server) are written
alike, so their headers are alike: each host starts at :data:`START_READ`, and once
:data:`WARMUP` of its headers have been parsed, its first read becomes the
:data:`PERCENTILE`-th percentile of the header extents seen (how far into the file each
header reached), plus :data:`MARGIN`, rounded up to :data:`STEP`. About
``1 - PERCENTILE / 100`` of the URLs then need one follow-up read, which keeps requests per
file under 1.05 while bytes per file track the real header size.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from rasteret_assets.storage.policy import url_origin

#: First read of a host nothing is known about yet. A run's first ``max_concurrent`` URLs all
#: start at this size before any header is back, so it is what those URLs cost: at 32 KiB,
#: 256 first reads made a 2,000-URL run read 7.5 KiB per file where its headers reach 1.9 KiB.
#: 16 KiB holds the header of a Sentinel-2 or Landsat COG (2-10 KiB) and half the files of the
#: shared fixtures (median 2.4 KiB); a host whose headers are larger pays one follow-up read
#: for these first URLs only, at most ``max_concurrent / N`` more requests per file.
START_READ = 16384
#: Headers seen before a host's first read follows them instead of :data:`START_READ`.
WARMUP = 32
#: Header extents kept per host (the newest), so a changing collection is followed.
WINDOW = 2048
#: Re-estimate a host's size after this many new headers, not after every one.
EVERY = 32
PERCENTILE = 98.0
#: Room beyond the percentile for files a little larger than those seen.
MARGIN = 1024
STEP = 1024
#: Smallest first read: below this, request overhead dominates anyway.
FLOOR = 4096


class LearnedFirstReads:
    """The first read size for each host, learned from the header extents of its files.

    ``ceiling`` caps a learned size (the run's header byte budget).
    """

    def __init__(self, *, start: int = START_READ, ceiling: int | None = None) -> None:
        if start < 1:
            raise ValueError(f"start must be >= 1, got {start}")
        self.start = start if ceiling is None else min(start, ceiling)
        self.ceiling = ceiling
        self._extents: dict[str, deque[int]] = {}
        self._sizes: dict[str, int] = {}
        self._since: dict[str, int] = {}

    def size_for(self, url: str) -> int:
        return self._sizes.get(url_origin(url), self.start)

    def record(self, url: str, extent: int) -> None:
        """``url``'s header reached ``extent`` bytes into the file."""
        key = url_origin(url)
        seen = self._extents.get(key)
        if seen is None:
            seen = self._extents[key] = deque(maxlen=WINDOW)
        seen.append(extent)
        since = self._since.get(key, 0) + 1
        if len(seen) < WARMUP or (since < EVERY and key in self._sizes):
            self._since[key] = since
            return
        self._since[key] = 0
        self._sizes[key] = self._estimate(seen)

    def _estimate(self, extents: deque[int]) -> int:
        high = float(np.percentile(np.fromiter(extents, np.int64, len(extents)), PERCENTILE))
        size = max(FLOOR, -(-(int(high) + MARGIN) // STEP) * STEP)
        return size if self.ceiling is None else min(size, self.ceiling)
