"""Window stitching: the original's rule (earlier windows win, only their own characters; padding dropped)."""

from __future__ import annotations

import numpy as np
import pytest

from openjukebox.align.stitch import SongStitcher, WindowAttention, shifted_key_chars, stitch_windows
from openjukebox.sample.windows import window_starts


def test_earlier_windows_win_on_their_own_characters():
    # Two windows of 4 frames at starts 0 and 2 over 6 frames; window 0 sees chars 0-2, window 1 chars 1-3.
    w0 = WindowAttention(0, np.full((4, 3), 1.0), np.array([0, 1, 2]))
    w1 = WindowAttention(2, np.full((4, 3), 2.0), np.array([1, 2, 3]))
    out = stitch_windows([w1, w0], frames=6, n_chars=5)  # order of the list does not matter
    expected = np.array(
        [
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 2, 0],  # overlap: window 0 on its chars, window 1 keeps char 3 (only it sees it)
            [1, 1, 1, 2, 0],
            [0, 2, 2, 2, 0],
            [0, 2, 2, 2, 0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


def test_padding_is_dropped_and_uncovered_frames_stay_zero():
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    w = WindowAttention(1, m, np.array([-1, -1, 0, 1]))  # a left-padded lyric window
    out = stitch_windows([w], frames=5, n_chars=2)
    np.testing.assert_array_equal(out[0], [0, 0])
    np.testing.assert_array_equal(out[1:4], m[:, 2:])
    np.testing.assert_array_equal(out[4], [0, 0])


def test_partial_last_window_keeps_only_existing_frames():
    w = WindowAttention(0, np.ones((8, 2)), np.array([0, 1]))
    out = stitch_windows([w], frames=5, n_chars=2)
    assert out.shape == (5, 2) and np.all(out == 1)


def test_windows_at_the_sampling_hop_cover_the_song():
    n_ctx, hop, frames = 8, 2, 21
    starts = window_starts(frames, n_ctx, hop)
    assert starts[-1] == frames - n_ctx
    windows = [WindowAttention(s, np.full((n_ctx, 1), float(s + 1)), np.array([0])) for s in starts]
    out = stitch_windows(windows, frames, 1)[:, 0]
    # each frame holds the earliest window covering it
    for t in range(frames):
        assert out[t] == min(s for s in starts if s <= t < s + n_ctx) + 1


def test_shifted_key_chars():
    np.testing.assert_array_equal(shifted_key_chars(np.array([-1, -1, 0, 1, 2])), [-1, -1, -1, 0, 1])
    np.testing.assert_array_equal(shifted_key_chars(np.array([[5, 6, 7]])), [[-1, 5, 6]])


def test_bad_windows():
    with pytest.raises(ValueError, match="do not match"):
        stitch_windows([WindowAttention(0, np.ones((2, 3)), np.array([0, 1]))], 4, 3)
    with pytest.raises(ValueError, match="key for character 5"):
        stitch_windows([WindowAttention(0, np.ones((2, 2)), np.array([0, 5]))], 4, 3)
    with pytest.raises(ValueError, match="outside"):
        stitch_windows([WindowAttention(9, np.ones((2, 2)), np.array([0, 1]))], 4, 3)


def test_stitcher_takes_windows_in_order_of_their_starts():
    stitcher = SongStitcher(6, 2)
    stitcher.add(WindowAttention(2, np.ones((4, 2)), np.array([0, 1])))
    with pytest.raises(ValueError, match="add windows in order"):
        stitcher.add(WindowAttention(0, np.ones((4, 2)), np.array([0, 1])))
