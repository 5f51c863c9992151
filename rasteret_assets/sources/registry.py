"""Known data sources: where their STAC records live, which asset holds which band, and how
their objects are best read.

A user who says ``data_source="sentinel-2-l2a"`` should not have to know that Earth Search
calls band ``B04`` the ``red`` asset, that the public bucket is cheaper to read as ``s3://``
than through its HTTPS endpoint, or that Landsat's bucket is requester-pays. This registry
holds exactly that knowledge, as plain data (no I/O, no imports from the rest of the package),
so builders, Dagster config and tests all read the same facts.

``band_map`` maps *band codes* (the names a collection's ``{band}_metadata`` columns and
readers use, e.g. ``B04``) to *asset keys* of the STAC items (e.g. ``red``), the same
direction as the reference API's ``band_map``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

EARTH_SEARCH_V1 = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER_STAC = "https://planetarycomputer.microsoft.com/api/stac/v1"
PLANETARY_COMPUTER_HOST = "planetarycomputer.microsoft.com"


def _frozen(mapping: Mapping[str, object] | None) -> MappingProxyType:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class CloudConfig:
    """How the objects of a source are read: credentials mode, bucket region, URL rewrites.

    ``anon=True`` sends unsigned S3 requests (public buckets need no credentials, and
    unsigned requests cannot fail on a stale local profile); ``False`` requires credentials
    (requester-pays buckets bill the caller, so they must be signed); ``None`` lets the AWS
    credential chain decide. ``url_rewrite_patterns`` are prefix rules applied once to every
    asset href before it is stored or read (see :func:`rasteret_assets.storage.rewrite_url`).
    ``url_signer="planetary-computer"`` signs Azure blob hrefs with SAS tokens when they are
    read (hrefs are stored unsigned).
    """

    provider: str = "aws"
    requester_pays: bool = False
    anon: bool | None = None
    region: str | None = None
    url_rewrite_patterns: Mapping[str, str] = field(default_factory=dict)
    url_signer: str | None = None

    def __post_init__(self) -> None:
        if self.requester_pays and self.anon:
            raise ValueError("requester_pays buckets need signed requests: anon must not be True")
        object.__setattr__(self, "url_rewrite_patterns", _frozen(self.url_rewrite_patterns))

    def storage_settings(self) -> dict[str, Any]:
        """The ``StorageOptions`` fields this config sets (unset ones are left out, so
        settings given elsewhere are not overridden by defaults)."""
        settings: dict[str, Any] = {}
        if self.anon is not None:
            settings["anon"] = self.anon
        if self.region is not None:
            settings["region"] = self.region
        if self.requester_pays:
            settings["requester_pays"] = True
        if self.url_signer is not None:
            settings["url_signer"] = self.url_signer
        return settings


@dataclass(frozen=True)
class DataSource:
    """One catalog collection and everything needed to index it."""

    id: str
    title: str
    stac_api: str
    collection: str
    band_map: Mapping[str, str]
    band_index_map: Mapping[str, int] = field(default_factory=dict)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    #: Other names the source is known by (e.g. rasteret 0.4's ids).
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.band_map:
            raise ValueError(f"data source {self.id!r}: band_map is empty")
        unknown = sorted(set(self.band_index_map) - set(self.band_map))
        if unknown:
            raise ValueError(
                f"data source {self.id!r}: band_index_map names bands {unknown} "
                "that are not in band_map"
            )
        object.__setattr__(self, "band_map", _frozen(self.band_map))
        object.__setattr__(self, "band_index_map", _frozen(self.band_index_map))


class UnknownDataSourceError(KeyError):
    """No registered source has this id; the message lists the ones that exist."""

    def __init__(self, source_id: str, known: list[str]) -> None:
        self.source_id = source_id
        self.known = tuple(known)
        super().__init__(source_id)

    def __str__(self) -> str:
        return (
            f"unknown data source {self.source_id!r}; known sources: {', '.join(self.known)}. "
            "Pass band_map= (and cloud_config=) to index a source that is not registered."
        )


#: Earth Search asset keys of the Sentinel-2 L2A bands (both the legacy ``sentinel-2-l2a``
#: and the Collection-1 ``sentinel-2-c1-l2a`` collections use them).
SENTINEL2_EARTH_SEARCH_BANDS: Mapping[str, str] = _frozen(
    {
        "B01": "coastal",
        "B02": "blue",
        "B03": "green",
        "B04": "red",
        "B05": "rededge1",
        "B06": "rededge2",
        "B07": "rededge3",
        "B08": "nir",
        "B8A": "nir08",
        "B09": "nir09",
        "B11": "swir16",
        "B12": "swir22",
        "SCL": "scl",
    }
)

#: Earth Search asset keys of the Landsat Collection 2 Level-2 (OLI/TIRS) bands.
LANDSAT_C2_L2_EARTH_SEARCH_BANDS: Mapping[str, str] = _frozen(
    {
        "B1": "coastal",
        "B2": "blue",
        "B3": "green",
        "B4": "red",
        "B5": "nir08",
        "B6": "swir16",
        "B7": "swir22",
        "B10": "lwir11",
        "qa_aerosol": "qa_aerosol",
        "qa_pixel": "qa_pixel",
        "qa_radsat": "qa_radsat",
    }
)

#: Planetary Computer's Sentinel-2 L2A asset keys are the band codes themselves.
SENTINEL2_PLANETARY_COMPUTER_BANDS: Mapping[str, str] = _frozen(
    {code: code for code in SENTINEL2_EARTH_SEARCH_BANDS}
)

#: Planetary Computer's blobs need a SAS token per container, added when they are read.
PLANETARY_COMPUTER_CLOUD = CloudConfig(provider="azure", url_signer="planetary-computer")


def stac_api_url_signer(stac_api: str) -> str | None:
    """The signer a STAC API's assets need whatever the source: Planetary Computer's items
    all point at SAS-protected blobs (the reference signs whenever it searches PC)."""
    host = (urlsplit(stac_api).hostname or "").lower()
    return "planetary-computer" if host == PLANETARY_COMPUTER_HOST else None


_REGISTRY: dict[str, DataSource] = {}
_ALIASES: dict[str, str] = {}


def register_source(source: DataSource, *, replace: bool = False) -> DataSource:
    """Add ``source`` (and its aliases) to the registry; refuses silent overwrites."""
    names = (source.id, *source.aliases)
    taken = [n for n in names if (n in _REGISTRY or n in _ALIASES)]
    if taken and not replace:
        raise ValueError(f"data source id(s) {taken} already registered; pass replace=True")
    _REGISTRY[source.id] = source
    for alias in source.aliases:
        _ALIASES[alias] = source.id
    return source


def get_source(source_id: str) -> DataSource:
    """The registered source called ``source_id`` (ids and aliases are case-insensitive)."""
    key = source_id.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownDataSourceError(source_id, list_sources()) from None


def find_source(source_id: str) -> DataSource | None:
    """Like :func:`get_source`, but ``None`` for unknown ids (custom sources are allowed)."""
    try:
        return get_source(source_id)
    except UnknownDataSourceError:
        return None


def list_sources() -> list[str]:
    """Registered source ids, sorted."""
    return sorted(_REGISTRY)


register_source(
    DataSource(
        id="sentinel-2-l2a",
        title="Sentinel-2 Level-2A (Earth Search, sen2cor COGs)",
        stac_api=EARTH_SEARCH_V1,
        collection="sentinel-2-l2a",
        band_map=SENTINEL2_EARTH_SEARCH_BANDS,
        cloud=CloudConfig(
            anon=True,
            region="us-west-2",
            url_rewrite_patterns={
                "https://sentinel-cogs.s3.us-west-2.amazonaws.com/": "s3://sentinel-cogs/"
            },
        ),
    )
)
register_source(
    DataSource(
        id="sentinel-2-c1-l2a",
        title="Sentinel-2 Collection-1 Level-2A (Earth Search)",
        stac_api=EARTH_SEARCH_V1,
        collection="sentinel-2-c1-l2a",
        band_map=SENTINEL2_EARTH_SEARCH_BANDS,
        cloud=CloudConfig(
            anon=True,
            region="us-west-2",
            url_rewrite_patterns={
                "https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/": (
                    "s3://e84-earth-search-sentinel-data/"
                )
            },
        ),
    )
)
register_source(
    DataSource(
        id="landsat-c2-l2",
        title="Landsat Collection 2 Level-2 (Earth Search, USGS requester-pays bucket)",
        stac_api=EARTH_SEARCH_V1,
        collection="landsat-c2-l2",
        band_map=LANDSAT_C2_L2_EARTH_SEARCH_BANDS,
        cloud=CloudConfig(
            requester_pays=True,
            anon=False,
            region="us-west-2",
            url_rewrite_patterns={"https://landsatlook.usgs.gov/data/": "s3://usgs-landsat/"},
        ),
        aliases=("landsat-c2l2-sr",),
    )
)
register_source(
    DataSource(
        id="pc/sentinel-2-l2a",
        title="Sentinel-2 Level-2A (Planetary Computer, SAS-signed Azure blobs)",
        stac_api=PLANETARY_COMPUTER_STAC,
        collection="sentinel-2-l2a",
        band_map=SENTINEL2_PLANETARY_COMPUTER_BANDS,
        cloud=PLANETARY_COMPUTER_CLOUD,
    )
)
register_source(
    DataSource(
        id="pc/landsat-c2-l2",
        title="Landsat Collection 2 Level-2 (Planetary Computer, SAS-signed Azure blobs)",
        stac_api=PLANETARY_COMPUTER_STAC,
        collection="landsat-c2-l2",
        # Planetary Computer names the Landsat assets as Earth Search does.
        band_map=LANDSAT_C2_L2_EARTH_SEARCH_BANDS,
        cloud=PLANETARY_COMPUTER_CLOUD,
    )
)

#: The reference's other Planetary Computer datasets: one asset per item.
_PC_SINGLE_ASSET = (
    ("pc/io-lulc-annual-v02", "ESRI 10m Land Use/Land Cover", "io-lulc-annual-v02", "LULC", "data"),
    ("pc/alos-dem", "ALOS World 3D 30m DEM", "alos-dem", "DEM", "data"),
    ("pc/nasadem", "NASADEM", "nasadem", "DEM", "elevation"),
    ("pc/esa-worldcover", "ESA WorldCover", "esa-worldcover", "MAP", "map"),
    ("pc/usda-cdl", "USDA Cropland Data Layer", "usda-cdl", "CDL", "cultivated"),
)
for _id, _title, _collection, _band, _asset in _PC_SINGLE_ASSET:
    register_source(
        DataSource(
            id=_id,
            title=f"{_title} (Planetary Computer, SAS-signed Azure blobs)",
            stac_api=PLANETARY_COMPUTER_STAC,
            collection=_collection,
            band_map={_band: _asset},
            cloud=PLANETARY_COMPUTER_CLOUD,
        )
    )
