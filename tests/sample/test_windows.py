"""Window plans of the sampling loop, checked against the original's rule on many lengths."""

from __future__ import annotations

import itertools

import pytest

from openjukebox.sample.windows import Window, plan_level, upper_slice, window_starts


def _original_starts(total: int, n_ctx: int, hop: int) -> list[int]:
    # The rule of the original sample loop, written out independently: every hop, the last one clipped.
    out, start = [], 0
    while start < total - n_ctx + hop:
        out.append(total - n_ctx if start + n_ctx >= total else start)
        start += hop
    return out


@pytest.mark.parametrize("total", [8192, 8193, 9000, 16384, 8192 * 3 + 100, 50000])
@pytest.mark.parametrize("hop", [1024, 4096, 8192])
def test_window_starts_follow_the_original_rule(total, hop):
    starts = window_starts(total, 8192, hop)
    assert starts == _original_starts(total, 8192, hop)
    assert starts[0] == 0 and starts[-1] == total - 8192
    assert all(b - a <= hop for a, b in itertools.pairwise(starts))


def test_ancestral_plan_covers_every_token_once():
    windows = plan_level(total=20, existing=0, n_ctx=8, hop=4)
    assert [(w.start, w.context, w.new_tokens) for w in windows] == [(0, 0, 8), (4, 4, 4), (8, 4, 4), (12, 4, 4)]
    assert sum(w.new_tokens for w in windows) == 20
    windows = plan_level(total=21, existing=0, n_ctx=8, hop=4)
    assert windows[-1] == Window(4, 13, 8, 7)  # last window pulled back: 7 tokens of context, 1 new


def test_continuation_skips_full_windows_and_primes_with_existing_tokens():
    windows = plan_level(total=20, existing=10, n_ctx=8, hop=4)
    assert [(w.start, w.context) for w in windows] == [(4, 6), (8, 4), (12, 4)]
    assert 10 + sum(w.new_tokens for w in windows) == 20
    assert plan_level(total=20, existing=20, n_ctx=8, hop=4) == []


def test_short_song_is_one_partial_window():
    assert plan_level(total=5, existing=0, n_ctx=8, hop=4) == [Window(0, 0, 5, 0)]
    assert plan_level(total=5, existing=3, n_ctx=8, hop=4) == [Window(0, 0, 5, 3)]
    with pytest.raises(ValueError, match="more than"):
        plan_level(total=5, existing=6, n_ctx=8, hop=4)


def test_upsampler_windows_align_with_the_level_above():
    # Level 1 of a 60 s official song: 82688 tokens, n_ctx 8192, hop 4096, conditioned on level 2 (x4).
    total = 60 * 44100 // 128 * 128 // 32
    windows = plan_level(total, 0, 8192, 4096, align=4)
    for w in windows:
        lo, hi = upper_slice(w, 8192, 4)
        assert (lo * 4, hi * 4) == (w.start, w.end)
    with pytest.raises(ValueError, match="multiple"):
        plan_level(total=30, existing=0, n_ctx=8, hop=3, align=4)
