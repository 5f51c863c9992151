"""RetryPolicy on a fake clock: attempt counts, back-off schedule, Retry-After."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from rasteret_assets.storage import RetryPolicy, StorageError

URL = "https://h/x.tif?X-Amz-Signature=SECRET"


class FakeClock:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def failing(errors: list[StorageError], result: str = "ok") -> Callable[[], Awaitable[str]]:
    """An operation that raises ``errors`` in order, then returns ``result``."""
    pending = list(errors)

    async def op() -> str:
        if pending:
            raise pending.pop(0)
        return result

    return op


def policy(clock: FakeClock, **kwargs: object) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, random=lambda: 1.0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_success_first_time_is_one_attempt() -> None:
    clock = FakeClock()
    assert await policy(clock).call(failing([]), url=URL) == ("ok", 1)
    assert clock.sleeps == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error_class", ["not_found", "forbidden", "forbidden_url", "unsupported", "corrupt"]
)
async def test_permanent_errors_are_tried_exactly_once(error_class: str) -> None:
    clock = FakeClock()
    with pytest.raises(StorageError) as info:
        await policy(clock).call(failing([StorageError(error_class, URL)]), url=URL)
    assert info.value.error_class == error_class
    assert info.value.attempts == 1
    assert clock.sleeps == []


@pytest.mark.asyncio
@pytest.mark.parametrize("error_class", ["throttled", "server_error", "timeout", "truncated"])
async def test_transient_errors_back_off_then_succeed(error_class: str) -> None:
    clock = FakeClock()
    op = failing([StorageError(error_class, URL)] * 3)
    result, attempts = await policy(clock, base_delay=0.2, max_delay=10).call(op, url=URL)
    assert (result, attempts) == ("ok", 4)
    # random() pinned to 1.0: the jitter ceiling itself, doubling per attempt.
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8])


@pytest.mark.asyncio
async def test_gives_up_after_max_attempts_with_attempt_count() -> None:
    clock = FakeClock()
    op = failing([StorageError("server_error", URL)] * 10)
    with pytest.raises(StorageError) as info:
        await policy(clock, max_attempts=5, base_delay=1.0, max_delay=3.0).call(op, url=URL)
    assert info.value.attempts == 5
    assert clock.sleeps == pytest.approx([1.0, 2.0, 3.0, 3.0])  # capped by max_delay


@pytest.mark.asyncio
async def test_full_jitter_stays_within_ceiling() -> None:
    clock = FakeClock()
    values = iter([0.0, 0.5, 0.25])
    jittery = RetryPolicy(base_delay=1.0, sleep=clock.sleep, random=lambda: next(values))
    op = failing([StorageError("timeout", URL)] * 3)
    await jittery.call(op, url=URL)
    assert clock.sleeps == pytest.approx([0.0, 1.0, 1.0])  # 0*1, 0.5*2, 0.25*4


@pytest.mark.asyncio
async def test_no_jitter_uses_the_ceiling() -> None:
    clock = FakeClock()
    fixed = RetryPolicy(base_delay=0.5, jitter=False, sleep=clock.sleep, random=lambda: 0.0)
    await fixed.call(failing([StorageError("timeout", URL)] * 2), url=URL)
    assert clock.sleeps == pytest.approx([0.5, 1.0])


@pytest.mark.asyncio
async def test_retry_after_is_honoured_and_capped() -> None:
    clock = FakeClock()
    errors = [
        StorageError("throttled", URL, retry_after=0.0),
        StorageError("throttled", URL, retry_after=3.0),
        StorageError("throttled", URL, retry_after=3600.0),
    ]
    result = await policy(clock, base_delay=5.0, max_delay=10.0).call(failing(errors), url=URL)
    assert result == ("ok", 4)
    assert clock.sleeps == pytest.approx([0.0, 3.0, 10.0])


@pytest.mark.asyncio
async def test_non_storage_errors_propagate_immediately() -> None:
    clock = FakeClock()

    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await policy(clock).call(broken, url=URL)
    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_retry_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    await policy(clock).call(failing([StorageError("throttled", URL)] * 2), url=URL)
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


# -- the per-URL deadline (real event-loop time, short) -------------------------------------


@pytest.mark.asyncio
async def test_an_attempt_running_past_the_deadline_ends_as_timeout() -> None:
    async def hangs() -> str:
        await asyncio.sleep(30)
        return "never"

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    with pytest.raises(StorageError) as info:
        await RetryPolicy(max_attempts=5).call(hangs, url=URL, deadline=loop.time() + 0.2)
    assert time.perf_counter() - started < 1.0
    assert (info.value.error_class, info.value.attempts) == ("timeout", 1)
    assert "deadline" in info.value.detail
    assert "SECRET" not in str(info.value)


@pytest.mark.asyncio
async def test_a_backoff_past_the_deadline_gives_up_with_the_last_error() -> None:
    clock = FakeClock()
    errors = [StorageError("throttled", URL, retry_after=5.0) for _ in range(3)]
    loop = asyncio.get_running_loop()
    with pytest.raises(StorageError) as info:
        await policy(clock).call(failing(errors), url=URL, deadline=loop.time() + 2.0)
    assert (info.value.error_class, info.value.attempts) == ("throttled", 1)
    assert clock.sleeps == []  # no sleeping towards certain failure


@pytest.mark.asyncio
async def test_retries_that_fit_before_the_deadline_still_happen() -> None:
    clock = FakeClock()
    errors = [StorageError("server_error", URL) for _ in range(2)]
    loop = asyncio.get_running_loop()
    result = await policy(clock, base_delay=0.01).call(
        failing(errors), url=URL, deadline=loop.time() + 10.0
    )
    assert result == ("ok", 3)


def test_url_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="url_deadline"):
        RetryPolicy(url_deadline=0)
    assert RetryPolicy(url_deadline=None).url_deadline is None
