"""UrlPolicy: metadata addresses, schemes, host/bucket patterns and local roots; the router."""

from __future__ import annotations

from pathlib import Path

import pytest

from rasteret_assets.storage import RetryPolicy, StorageError, StorageOptions, StorageRouter
from rasteret_assets.storage.policy import MAX_CACHED_ORIGINS, UrlPolicy, blocked_address

METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",  # ECS task credentials
    "https://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]/x.tif",
    "http://[fe80::1%25eth0]/x.tif",
    "http://[::ffff:169.254.169.254]/x.tif",
    "http://2852039166/latest/",  # 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/latest/",  # ... as hex
    "http://169.254.43518/latest/",  # ... in the a.b.c short form
    "http://100.100.100.200/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./computeMetadata/v1/",
    "http://metadata/computeMetadata/v1/",
    "http://instance-data/latest/",
]


@pytest.mark.parametrize("url", METADATA_URLS)
def test_metadata_and_link_local_are_refused_by_every_policy(url: str) -> None:
    permissive = UrlPolicy()
    assert permissive.violation(url) is not None
    with pytest.raises(StorageError) as info:
        permissive.check(url + "?token=SECRET")
    assert info.value.error_class == "forbidden_url"
    assert not info.value.transient
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x.tif",
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/a/b.tif",
        "http://[::1]/x.tif",
        "http://169.255.0.1/x.tif",
        "s3://metadata/x.tif",  # bucket names are not host names
    ],
)
def test_ordinary_urls_pass_the_default_policy(url: str) -> None:
    assert UrlPolicy().violation(url) is None


def test_blocked_address_judges_only_ip_literals() -> None:
    assert blocked_address("169.254.169.254") is not None
    assert blocked_address("::ffff:a9fe:a9fe") is not None
    assert blocked_address("10.0.0.1") is None
    assert blocked_address("example.com") is None


def test_schemes_are_restricted() -> None:
    policy = UrlPolicy(allowed_schemes=frozenset({"https", "s3"}))
    assert policy.violation("https://h/x.tif") is None
    assert policy.violation("s3://b/x.tif") is None
    assert "scheme 'http'" in (policy.violation("http://h/x.tif") or "")
    assert "local files" in (policy.violation("/data/x.tif") or "")
    assert "scheme 'file'" in (policy.violation("file:///data/x.tif") or "")
    with pytest.raises(ValueError, match="unknown URL schemes"):
        UrlPolicy(allowed_schemes=frozenset({"gopher"}))


def test_host_and_bucket_patterns() -> None:
    policy = UrlPolicy(allowed_hosts=("*.amazonaws.com", "Sentinel-COGS", "data.example.org."))
    assert policy.violation("https://sentinel-cogs.s3.us-west-2.amazonaws.com/x.tif") is None
    assert policy.violation("s3://sentinel-cogs/x.tif") is None
    assert policy.violation("https://DATA.example.org/x.tif") is None
    refused = policy.violation("s3://other-bucket/x.tif")
    assert refused is not None and "bucket 'other-bucket'" in refused
    refused = policy.violation("https://evil.example.com/x.tif")
    assert refused is not None and "host 'evil.example.com'" in refused
    # The host pattern never lifts the metadata refusal.
    assert UrlPolicy(allowed_hosts=("169.254.*",)).violation("http://169.254.169.254/") is not None


def test_verdicts_are_remembered_per_origin_and_never_across_origins() -> None:
    policy = UrlPolicy(allowed_hosts=("data.example.org",))
    urls = [
        "https://data.example.org/a.tif",
        "https://data.example.org.evil.com/a.tif",
        "https://data.example.org:8443/a.tif",
        "https://user@evil.com/data.example.org/a.tif",
        "https://data.example.org?x=/evil.com",
        "http://169.254.169.254/data.example.org",
    ]
    fresh = [UrlPolicy(allowed_hosts=("data.example.org",)).violation(url) for url in urls]
    assert [v is None for v in fresh] == [True, False, True, False, True, False]
    for _ in range(3):  # the second and third rounds come from the remembered verdicts
        assert [policy.violation(url) for url in urls] == fresh
    assert policy.violation("https://data.example.org/other/b.tif") is None
    for i in range(MAX_CACHED_ORIGINS + 10):  # the memory stays bounded
        policy.violation(f"https://h{i}.example.org/x.tif")
    assert len(policy._verdicts) <= MAX_CACHED_ORIGINS
    assert policy.violation("https://evil.com/x.tif") is not None


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    for directory in (allowed, outside):
        directory.mkdir()
        (directory / "x.tif").write_bytes(b"II*\x00")
    return allowed, outside


def test_local_files_only_under_allowed_roots(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed, outside = roots
    policy = UrlPolicy(allowed_local_roots=(allowed,))
    assert policy.violation(str(allowed / "x.tif")) is None
    assert policy.violation((allowed / "x.tif").as_uri()) is None
    assert policy.violation(str(allowed / "missing" / "later.tif")) is None
    refused = policy.violation(str(outside / "x.tif"))
    assert refused is not None and "outside the allowed local roots" in refused
    assert policy.violation(f"{allowed}/../outside/x.tif") is not None
    assert policy.violation("file:///etc/passwd") is not None
    # A file URL is judged by its own path, whatever the case of its scheme: never one
    # verdict per "origin" shared by every file URL.
    first = policy.violation(f"FILE://{outside / 'x.tif'}")
    second = policy.violation(f"FILE://{outside / 'y.tif'}")
    assert first is not None and "x.tif" in first
    assert second is not None and "y.tif" in second
    monkeypatch.chdir(allowed)
    assert policy.violation("x.tif") is None
    assert policy.violation("../outside/x.tif") is not None


def test_symlinks_are_resolved_before_comparing(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    (allowed / "escape").symlink_to(outside)
    (allowed / "link.tif").symlink_to(outside / "x.tif")
    policy = UrlPolicy(allowed_local_roots=(allowed,))
    assert policy.violation(str(allowed / "escape" / "x.tif")) is not None
    assert policy.violation(str(allowed / "link.tif")) is not None
    # A root given through a symlink still admits its real files.
    (outside / "root-link").symlink_to(allowed)
    via_link = UrlPolicy(allowed_local_roots=(outside / "root-link",))
    assert via_link.violation(str(allowed / "x.tif")) is None


def test_no_local_roots_means_no_local_files(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    refused = UrlPolicy(allowed_local_roots=()).violation(str(allowed / "x.tif"))
    assert refused is not None and "none configured" in refused


@pytest.mark.asyncio
async def test_router_checks_every_url_it_reads(roots: tuple[Path, Path]) -> None:
    """Hrefs arrive already rewritten (at record time), so the policy sees the URL read."""
    allowed, outside = roots
    router = StorageRouter(StorageOptions(url_policy=UrlPolicy(allowed_local_roots=(allowed,))))
    assert await router.get_range(str(allowed / "x.tif"), 0, 4) == b"II*\x00"
    for url in ("http://169.254.169.254/latest/meta-data/", str(outside / "x.tif")):
        with pytest.raises(StorageError) as info:
            await router.get_range(url, 0, 4)
        assert info.value.error_class == "forbidden_url"
    await router.close()


@pytest.mark.asyncio
async def test_forbidden_url_is_tried_once() -> None:
    router = StorageRouter()
    retry = RetryPolicy(max_attempts=5, base_delay=0.001)
    with pytest.raises(StorageError) as info:
        await retry.call(lambda: router.head("http://169.254.169.254/x"), url="x")
    assert (info.value.error_class, info.value.attempts) == ("forbidden_url", 1)
    await router.close()


def test_unknown_scheme_stays_unsupported_not_forbidden() -> None:
    with pytest.raises(StorageError) as info:
        StorageRouter(StorageOptions(url_policy=UrlPolicy(allowed_schemes=frozenset()))).resolve(
            "gs://bucket/x.tif"
        )
    assert info.value.error_class == "unsupported"
