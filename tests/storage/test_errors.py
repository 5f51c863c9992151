"""StorageError: classes, transience, redaction, pickling."""

from __future__ import annotations

import pickle

import pytest

from rasteret_assets.storage import ERROR_CLASSES, TRANSIENT_CLASSES, StorageError


def test_transient_classes_are_exactly_the_retryable_ones() -> None:
    assert {"throttled", "server_error", "timeout", "truncated"} == TRANSIENT_CLASSES
    for error_class in ERROR_CLASSES:
        error = StorageError(error_class, "https://h/x.tif")
        assert error.transient is (error_class in TRANSIENT_CLASSES)


@pytest.mark.parametrize(
    "error_class", ["not_found", "forbidden", "forbidden_url", "not_tiff", "corrupt"]
)
def test_permanent_classes(error_class: str) -> None:
    assert not StorageError(error_class, "s3://b/k").transient


def test_unknown_class_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown error class"):
        StorageError("teapot", "https://h/x")


def test_url_and_message_are_redacted() -> None:
    error = StorageError(
        "forbidden",
        "https://h/x.tif?X-Amz-Signature=SECRET",
        "upstream said: GET https://h/x.tif?X-Amz-Signature=SECRET failed",
    )
    assert error.url == "https://h/x.tif"
    assert "SECRET" not in str(error)
    assert "SECRET" not in repr(error)


def test_pickle_round_trip_keeps_state() -> None:
    error = StorageError("throttled", "https://h/x", "slow down", retry_after=1.5, status=503)
    error.attempts = 4
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is StorageError
    assert (clone.error_class, clone.url, clone.retry_after, clone.status, clone.attempts) == (
        "throttled",
        "https://h/x",
        1.5,
        503,
        4,
    )
    assert str(clone) == str(error)
