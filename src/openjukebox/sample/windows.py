"""Where each window of a level is sampled, and what it is conditioned on (the original `sample.py` loop).

A level of `total` tokens is generated in windows of the prior's `n_ctx` tokens. Window starts are 0, hop, 2 hop,
... (`hop = hop_fraction * n_ctx`: 0.125 at the top, 0.5 for the upsamplers by default); the last start is pulled
back to `total - n_ctx` so that the last window also has a full context. Every window keeps the tokens that exist
in it as its prompt and samples the rest, so consecutive windows overlap by n_ctx - hop tokens.

Songs shorter than one window are sampled in one partial window starting at 0. (The original samples
`existing + total` tokens there when continuing saved codes, overshooting the requested length; we always stop
at `total`.)

Conditioning that moves with the window:
- the label vector's offset is `start * hop_length` samples past the song start, and its lyric window is
  recomputed (the labeller's `for_window`);
- an upsampler sees the codes of the level above over the same audio span: tokens
  [start / cond_downsample, (start + n_ctx) / cond_downsample), padded with code 0 past the end of a short song
  (the original requires upsampled songs to be at least one window long).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One sampling step of a level: tokens [start, start + length) with the first `context` already present."""

    index: int  # position of this window in the level's plan
    start: int
    length: int  # tokens covered (n_ctx, or fewer for a partial window)
    context: int  # tokens already present at the start of the window (the prompt)

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def new_tokens(self) -> int:
        return self.length - self.context


def window_starts(total: int, n_ctx: int, hop: int) -> list[int]:
    """Starts of the full windows covering `total` tokens (total >= n_ctx): 0, hop, ... and total - n_ctx last."""
    if total < n_ctx:
        raise ValueError(f"{total} tokens do not fill one window of {n_ctx}")
    if not 0 < hop <= n_ctx:
        raise ValueError(f"hop must be in (0, {n_ctx}], got {hop}")
    starts = []
    for start in range(0, total - n_ctx + hop, hop):
        starts.append(min(start, total - n_ctx))
    return starts


def plan_level(total: int, existing: int, n_ctx: int, hop: int, align: int = 1) -> list[Window]:
    """The windows that take a level from `existing` to `total` tokens; windows with nothing new are left out.

    `align`: window starts must be multiples of it (the level above's cond_downsample for upsamplers); the
    original's hop lengths and song lengths guarantee this, and a violation is an error rather than a shift.
    """
    if existing > total:
        raise ValueError(f"{existing} tokens already exist, more than the {total} requested")
    if total < n_ctx:
        return [Window(0, 0, total, existing)] if existing < total else []
    windows = []
    for start in window_starts(total, n_ctx, hop):
        context = min(max(existing - start, 0), n_ctx)
        if context >= n_ctx:
            continue
        if start % align:
            raise ValueError(f"window start {start} is not a multiple of {align} (hop {hop}, total {total})")
        windows.append(Window(len(windows), start, n_ctx, context))
        existing = start + n_ctx
    return windows


def upper_slice(window: Window, n_ctx: int, cond_downsample: int) -> tuple[int, int]:
    """Token span [lo, hi) of the level above that conditions `window` (hi - lo = n_ctx / cond_downsample)."""
    if window.start % cond_downsample or n_ctx % cond_downsample:
        raise ValueError(f"window start {window.start} and n_ctx {n_ctx} must be multiples of {cond_downsample}")
    lo = window.start // cond_downsample
    return lo, lo + n_ctx // cond_downsample
