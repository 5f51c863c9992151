"""Merging nearby ranges into fewer requests."""

from __future__ import annotations

import asyncio

import pytest

from rasteret_assets.storage.coalesce import Span, coalesce_ranges, read_coalesced


def test_nearby_ranges_merge_and_far_ones_do_not() -> None:
    ranges = [(0, 100), (150, 50), (10_000, 10), (120, 10)]
    spans = coalesce_ranges(ranges, max_gap=64, max_span=1_000_000)
    assert spans == [Span(0, 200, (0, 3, 1)), Span(10_000, 10_010, (2,))]


def test_overlapping_and_contained_ranges() -> None:
    spans = coalesce_ranges([(0, 100), (50, 10), (90, 20)], max_gap=0, max_span=1000)
    assert spans == [Span(0, 110, (0, 1, 2))]


def test_max_span_limits_merging() -> None:
    spans = coalesce_ranges([(0, 600), (600, 600)], max_gap=10, max_span=1000)
    assert [(s.start, s.end) for s in spans] == [(0, 600), (600, 1200)]


def test_zero_length_ranges_need_no_request() -> None:
    assert coalesce_ranges([(5, 0)]) == []


@pytest.mark.asyncio
async def test_read_coalesced_slices_in_input_order_with_eof() -> None:
    data = bytes(range(200))
    calls: list[tuple[int, int]] = []

    async def read(start: int, length: int) -> bytes:
        calls.append((start, length))
        return data[start : start + length]

    ranges = [(190, 50), (0, 10), (185, 3), (20, 0), (500, 5)]
    out = await read_coalesced(read, ranges, max_gap=1000)
    assert out == [data[190:200], data[0:10], data[185:188], b"", b""]
    assert calls == [(0, 505)]


def test_negative_ranges_are_rejected() -> None:
    with pytest.raises(ValueError):
        coalesce_ranges([(-1, 10)])


@pytest.mark.asyncio
async def test_a_failing_span_cancels_the_others() -> None:
    started: list[int] = []
    finished: list[int] = []

    async def read(start: int, length: int) -> bytes:
        started.append(start)
        if start == 0:
            raise RuntimeError("boom")
        await asyncio.sleep(10)
        finished.append(start)
        return b""

    with pytest.raises(RuntimeError, match="boom"):
        await read_coalesced(read, [(0, 1), (1_000_000, 1), (2_000_000, 1)], max_gap=0)
    assert sorted(started) == [0, 1_000_000, 2_000_000]
    assert finished == []
