"""Lyrics alignment of a whole song from a lyric top prior's attention (Jukebox paper §5.3; issue 7).

`align_codes` teacher-forces the top prior over every window of a song's top-level codes, at the windows
sampling uses (`sample.windows.window_starts`, hop = hop_fraction * n_ctx; a song shorter than one window is
padded with code 0 to one window and only its own frames are kept, as the original), with each window's label
vector from the labeller (`for_window`: offset and lyric window moved to the window). The chosen layer/head's
music-over-lyrics attention of each window (`attention.window_attention`) is placed in the song's matrix at the
characters its keys stand for (`stitch`), and the monotonic path through that matrix gives character and word
times (`path.decode_alignment`).

The layer and head: the prior config's `alignment` (official 5b_lyrics: layer 68 head 2; 1b_lyrics: 63/0), or,
for our own models, the one `choose_alignment_head` finds on held-out songs and `with_alignment` stores in the
config. Its score for a head, averaged over every window of the examples (`head_score` of the window's
(n_ctx, characters) attention, its keys in character order):

    score = path_mass * progress
    path_mass = mean over frames of the attention mass within `radius` characters of the monotonic path
    progress  = fraction of the characters the path moves through, (last - first + 1) / n_chars

A head that follows the lyrics concentrates its mass on a path that walks through the whole text (both near 1);
uniform attention has path_mass about (2 radius + 1) / n_tokens; a head that stares at one key ("attention sink")
has high path_mass but progress near 0. A window sees more characters than it sings, so even a perfect head
scores below 1; the score ranks heads, it is not a probability.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from openjukebox.align.attention import check_lyric_layer, lyric_layers, window_attentions
from openjukebox.align.path import decode_alignment, monotonic_path
from openjukebox.align.stitch import SongStitcher, WindowAttention, shifted_key_chars
from openjukebox.align.types import Alignment
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior.config import PriorConfig
from openjukebox.prior.labeller import Labeller, Labels
from openjukebox.sample.windows import window_starts


def _check_lyrics_prior(prior) -> None:
    if prior.config.lyrics is None or prior.config.n_tokens == 0:
        raise OpenJukeboxError("this model's top prior has no lyrics conditioning: it cannot align lyrics")


def song_labels(prior, labeller: Labeller, artist: str, genre: str, lyrics, total_length: int) -> Labels:
    """The song's base labels (offset 0); lyrics that leave no character in the prior's vocabulary are an error.

    A song shorter than the prior's shortest training length is labelled as that length (as sampling does).
    """
    if isinstance(lyrics, str) and not lyrics.strip():
        raise OpenJukeboxError("the lyrics are empty: nothing to align")
    lc = prior.config.labels
    if lc is not None and lc.timing:
        total_length = max(total_length, math.ceil(lc.min_duration * prior.config.sample_rate))
    labels = labeller.labels(artist, genre, lyrics, total_length)
    if not labels.lyrics[0].text.strip():
        raise OpenJukeboxError("the lyrics have no character in the model's lyric vocabulary: nothing to align")
    return labels


def song_windows(frames: int, n_ctx: int, hop_fraction: float) -> list[int]:
    """Window starts over `frames` top-level codes (one padded window at 0 for a shorter song)."""
    if not 0 < hop_fraction <= 1:
        raise OpenJukeboxError(f"hop fraction must be in (0, 1], got {hop_fraction}")
    if frames < n_ctx:
        return [0]
    return window_starts(frames, n_ctx, max(1, int(hop_fraction * n_ctx)))


def _device(prior) -> torch.device:
    return next(prior.parameters()).device


def window_stream(
    prior,
    labeller: Labeller,
    top_codes: torch.Tensor,
    labels: Labels,
    layers: Sequence[int],
    hop_fraction: float = 0.125,
    batch_size: int = 1,
) -> Iterator[tuple[int, np.ndarray, dict[int, np.ndarray]]]:
    """Teacher-forced attention of every window of a song, in order of the window starts.

    Yields (start, key_chars (n_tokens,) the character each key stands for, layer -> (heads, rows, n_tokens)
    float32 attention), rows = the window's frames that exist in the song (n_ctx, or fewer when padded).
    """
    c = prior.config
    if top_codes.dim() != 2 or top_codes.shape[0] != 1:
        raise ValueError(f"top_codes must be (1, T), got {tuple(top_codes.shape)}")
    frames = top_codes.shape[1]
    if frames < 1:
        raise OpenJukeboxError("no top-level codes to align")
    device = _device(prior)
    codes = top_codes.long().to(device)
    if frames < c.n_ctx:
        codes = torch.cat([codes, codes.new_zeros(1, c.n_ctx - frames)], dim=1)  # the original pads with code 0
    starts = song_windows(frames, c.n_ctx, hop_fraction)
    base = labels.to(device)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        windows = [labeller.for_window(base, s) for s in chunk]
        y = torch.cat([w.y for w in windows])  # (b, y_length)
        x = torch.cat([codes[:, s : s + c.n_ctx] for s in chunk])  # (b, n_ctx)
        weights = window_attentions(prior, x, y, None, layers)  # layer -> (b, H, n_ctx, n_tokens)
        for j, (s, win) in enumerate(zip(chunk, windows)):
            assert win.indices is not None
            rows = min(c.n_ctx, frames - s)
            keys = shifted_key_chars(win.indices[0].cpu().numpy())
            yield s, keys, {layer: w[j, :, :rows].cpu().numpy() for layer, w in weights.items()}


def align_codes(
    prior,
    labeller: Labeller,
    top_codes: torch.Tensor,
    artist: str,
    genre: str,
    lyrics,
    total_length: int | None = None,
    hop_fraction: float = 0.125,
    layer: int | None = None,
    head: int | None = None,
    *,
    source: str = "forced",
    batch_size: int = 1,
) -> Alignment:
    """Align lyrics to a song's top-level codes.

    Args:
        prior: the lyric top prior (eval mode, on the device to run on); labeller: its `Labeller`.
        top_codes: (1, T) long, the song's top-level codes (T frames of hop_length / sample_rate seconds).
        artist, genre, lyrics: the song's labels; lyrics is text (or timed words, see `Labeller`).
        total_length: the song's length in samples for the timing labels (default T * hop_length).
        hop_fraction: window hop as a fraction of n_ctx (the top level's sampling default 0.125).
        layer, head: the attention to read (default the prior config's `alignment`).
        source: "forced" (existing audio) or "sampled" (codes the prior generated).
        batch_size: windows per forward.
    Returns:
        the `Alignment` (times in seconds from the start of the codes).
    """
    _check_lyrics_prior(prior)
    c = prior.config
    if layer is None and head is None:
        if c.alignment is None:
            raise OpenJukeboxError(
                "this prior's config names no alignment layer/head: pass --layer and --head, or choose them with "
                "openjukebox.align.choose_alignment_head"
            )
        layer, head = c.alignment
    elif layer is None or head is None:
        raise OpenJukeboxError("give both the alignment layer and head, or neither")
    check_lyric_layer(prior, layer, head)
    frames = top_codes.shape[-1]
    total = frames * c.hop_length if total_length is None else int(total_length)
    labels = song_labels(prior, labeller, artist, genre, lyrics, total)
    text = labels.lyrics[0].text
    stitcher = SongStitcher(frames, len(text))
    for start, keys, weights in window_stream(prior, labeller, top_codes, labels, [layer], hop_fraction, batch_size):
        stitcher.add(WindowAttention(start, weights[layer][head], keys))
    matrix = stitcher.matrix
    frame_seconds = c.hop_length / c.sample_rate
    return decode_alignment(
        matrix, text, frame_seconds, duration=frames * frame_seconds, source=source, layer=layer, head=head
    )


@dataclass(frozen=True)
class AlignmentExample:
    """A held-out song for choosing the alignment head: its top-level codes (1, T) and labels."""

    codes: torch.Tensor
    artist: str
    genre: str
    lyrics: str
    total_length: int | None = None


def head_score(matrix: np.ndarray, radius: int = 2) -> float:
    """path_mass * progress of one (frames, chars) attention matrix, columns in character order (module
    docstring); 0 for a matrix with no attention."""
    covered = matrix.sum(axis=1) > 0
    if not covered.any():
        return 0.0
    path = monotonic_path(matrix)
    n = matrix.shape[1]
    rows = np.nonzero(covered)[0]
    lo = np.clip(path[rows] - radius, 0, n)
    hi = np.clip(path[rows] + radius + 1, 0, n)
    csum = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(matrix[rows], axis=1, dtype=np.float64)], axis=1)
    mass = np.clip(csum[np.arange(len(rows)), hi] - csum[np.arange(len(rows)), lo], 0.0, 1.0)
    progress = (path[-1] - path[0] + 1) / n
    return float(mass.mean() * progress)


def choose_alignment_head(
    prior,
    labeller: Labeller,
    examples: Sequence[AlignmentExample],
    hop_fraction: float = 0.125,
    radius: int = 2,
) -> tuple[int, int, float]:
    """The (layer, head, score) of the lyric layer/head whose attention is most monotonic and diagonal on the
    examples: `head_score` of every window's attention over the keys that stand for characters, averaged over
    all windows of all examples (scored per window, so no song matrix per head is kept). Store the choice in the
    config with `with_alignment`."""
    _check_lyrics_prior(prior)
    if not examples:
        raise OpenJukeboxError("choosing the alignment head needs at least one held-out song")
    layers = lyric_layers(prior)
    if not layers:
        raise OpenJukeboxError("this prior has no cross-attention or prime-attention layer")
    c = prior.config
    scores: dict[tuple[int, int], list[float]] = {}
    for ex in examples:
        frames = ex.codes.shape[-1]
        total = frames * c.hop_length if ex.total_length is None else int(ex.total_length)
        labels = song_labels(prior, labeller, ex.artist, ex.genre, ex.lyrics, total)
        for _, keys, weights in window_stream(prior, labeller, ex.codes, labels, layers, hop_fraction):
            valid = keys >= 0  # keys in character order: the window's characters are consecutive
            for layer, w in weights.items():
                for head in range(w.shape[0]):
                    scores.setdefault((layer, head), []).append(head_score(w[head][:, valid], radius))
    (layer, head), values = max(scores.items(), key=lambda kv: (float(np.mean(kv[1])), -kv[0][0], -kv[0][1]))
    return layer, head, float(np.mean(values))


def with_alignment(config: PriorConfig, layer: int, head: int) -> PriorConfig:
    """`config` with its lyrics' alignment layer and head set (for saving with the model)."""
    if config.lyrics is None:
        raise OpenJukeboxError("this prior has no lyrics conditioning")
    if not 0 <= layer < config.depth or not 0 <= head < config.heads:
        raise OpenJukeboxError(
            f"layer {layer} / head {head} outside the prior ({config.depth} layers, {config.heads} heads)"
        )
    return replace(config, lyrics=replace(config.lyrics, alignment_layer=layer, alignment_head=head))
