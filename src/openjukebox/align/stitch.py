"""One song's attention matrix from its windows' (the original `jukebox/align.py`, `get_alignment`).

Each window covers top-level frames [start, start + n_ctx) and sees a window of the lyrics; `key_chars[j]` says
which character of the song's text key j stands for (-1: padding, or a key that stands for no character). The
windows are written into a (frames, characters) matrix in reverse order of their starts, so that where windows
overlap the earlier window wins (it has more of the song's past in its context, as the original argues for
sampling). As in the original, a window overwrites only the columns of its own characters: in an overlap, a
character only the later window sees keeps the later window's value, so a row can then sum to more than 1.
Frames no window covers stay 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowAttention:
    """One window's attention: frames [start, start + rows) over its keys.

    matrix: (rows, n_keys) music-over-lyrics attention (rows <= n_ctx: a padded last window keeps only the
        frames that exist); key_chars: (n_keys,) int character index of each key, -1 for none.
    """

    start: int
    matrix: np.ndarray
    key_chars: np.ndarray


class SongStitcher:
    """Builds the song matrix window by window, in order of the windows' starts, without keeping the windows: a
    cell takes the first value written to it, which is the original's reverse-order overwrite (the earliest
    window covering a frame and seeing a character wins). Memory: the matrix and one bool per cell."""

    def __init__(self, frames: int, n_chars: int) -> None:
        self.frames, self.n_chars = frames, n_chars
        self._matrix = np.zeros((frames, n_chars + 1), dtype=np.float32)  # last column: keys of no character
        self._written = np.zeros((frames, n_chars + 1), dtype=bool)
        self._last_start = -1

    def add(self, w: WindowAttention) -> None:
        m = np.asarray(w.matrix, dtype=np.float32)
        chars = np.asarray(w.key_chars, dtype=np.int64)
        if m.ndim != 2 or chars.shape != (m.shape[1],):
            raise ValueError(f"window at {w.start}: matrix {m.shape} and key_chars {chars.shape} do not match")
        if chars.max(initial=-1) >= self.n_chars:
            raise ValueError(f"window at {w.start}: key for character {chars.max()} of a text of {self.n_chars}")
        end = min(w.start + m.shape[0], self.frames)
        if w.start < 0 or end <= w.start:
            raise ValueError(f"window at {w.start} with {m.shape[0]} rows lies outside the song's {self.frames} frames")
        if w.start < self._last_start:
            raise ValueError(f"window at {w.start} comes after one at {self._last_start}: add windows in order")
        self._last_start = w.start
        rows = slice(w.start, end)
        columns = np.where(chars >= 0, chars, self.n_chars)
        free = ~self._written[rows][:, columns]  # (r, keys)
        self._matrix[rows, columns] = np.where(free, m[: end - w.start], self._matrix[rows][:, columns])
        self._written[rows, columns] = True

    @property
    def matrix(self) -> np.ndarray:
        """(frames, n_chars) float32."""
        return self._matrix[:, : self.n_chars]


def stitch_windows(windows: Sequence[WindowAttention], frames: int, n_chars: int) -> np.ndarray:
    """The song's (frames, n_chars) float32 attention matrix (module docstring for the rule)."""
    stitcher = SongStitcher(frames, n_chars)
    for w in sorted(windows, key=lambda w: w.start):  # stable: of equal starts, the first listed wins
        stitcher.add(w)
    return stitcher.matrix


def shifted_key_chars(indices: np.ndarray) -> np.ndarray:
    """Characters the keys of a lyric window stand for: key j has read tokens 0 .. j-1 (inputs are shifted by one),
    so it stands for token j-1's character; key 0 has read only the start slot (-1).

    indices: (..., n_tokens) the window's token -> character indices (the labeller's, -1 for padding).
    """
    indices = np.asarray(indices, dtype=np.int64)
    out = np.full_like(indices, -1)
    out[..., 1:] = indices[..., :-1]
    return out
