"""Label conditioner of the priors: artist/genre start embedding and the time-range signal.

The label vector `y` (one row per sample, long) is laid out as
`[total_length, offset, sample_length, artist_id, genre_id x max_bow_genre_size, lyric tokens...]`
(all lengths in audio samples, unused genre slots are -1). From it:

- the *start embedding* (B, 1, width) is the artist embedding plus the sum of the embeddings of the genre ids
  that are >= 0 (the bag of genre words);
- the *time signal* (B, n_time, width), only where `include_time_signal`, is the sum of three binned-range
  embeddings: the song's total length over [min_duration*sr, max_duration*sr), the absolute position of the
  window [offset, offset + sample_length] over [0, max_duration*sr), and the relative position
  [offset/total, (offset + sample_length)/total] over [0, 1] (the relative end is clamped into [0, 1], since a
  window may run past the end of the song).

Binning (`range_bins`): the window [start, end] is spread over `n_time` positions
`start + (end - start) * i / n_time` for i = 0..n_time-1 (the end itself is never reached; with n_time == 1 the
position is just `start`), and each position falls in bin `floor(bins * (pos - lo) / (hi - lo))`. The arithmetic
is done in float32 in this exact order so the bins match the original bit for bit. One deliberate difference:
bins are clamped into [0, bins - 1]; the original fails with an index error in the one case where float32
rounding lands a position on `hi` (e.g. offset = total_length - 1 for a song longer than 2**24 samples).

Key map (the original `LabelConditioner` lives at `y_emb.` in a released prior):

| original (under `y_emb.`)       | ours                                 |
|---------------------------------|--------------------------------------|
| `bow_genre_emb.emb.weight`      | `genre_embedding.weight`             |
| `artist_emb.emb.weight`         | `artist_embedding.weight`            |
| `total_length_emb.emb.weight`   | `total_length_embedding.weight`      |
| `absolute_pos_emb.emb.weight`   | `absolute_position_embedding.weight` |
| `relative_pos_emb.emb.weight`   | `relative_position_embedding.weight` |
"""

from __future__ import annotations

import torch
from torch import nn

from openjukebox.errors import OpenJukeboxError

LABEL_KEY_MAP: dict[str, str] = {
    "bow_genre_emb.emb.weight": "genre_embedding.weight",
    "artist_emb.emb.weight": "artist_embedding.weight",
    "total_length_emb.emb.weight": "total_length_embedding.weight",
    "absolute_pos_emb.emb.weight": "absolute_position_embedding.weight",
    "relative_pos_emb.emb.weight": "relative_position_embedding.weight",
}


def convert_label_state_dict(state: dict[str, torch.Tensor], prefix: str = "y_emb.") -> dict[str, torch.Tensor]:
    """Our `LabelConditioner` state dict from the original keys found under `prefix` (other keys are left out).

    `prefix=""` converts the state dict of an original `LabelConditioner` on its own.
    """
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # saved from a DDP wrapper
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest in LABEL_KEY_MAP:
            out[LABEL_KEY_MAP[rest]] = value
        elif prefix:
            raise OpenJukeboxError(f"unknown label-conditioner key in checkpoint: {key}")
    return out


def range_bins(
    start: torch.Tensor,
    end: torch.Tensor | None,
    n_time: int,
    bins: int,
    lo: float,
    hi: float,
    clamp_end: bool = False,
) -> torch.Tensor:
    """Bin indices (B, n_time) of `n_time` positions interpolated over [start, end] (each (B, 1)) in [lo, hi).

    `start` must lie in [lo, hi) and `end` in [lo, hi] (after clamping into it when `clamp_end`); `end` may be
    None only when n_time == 1.
    """
    if start.dim() != 2 or start.shape[1] != 1:
        raise ValueError(f"start must have shape (B, 1), got {tuple(start.shape)}")
    if not bool(((start >= lo) & (start < hi)).all()):
        raise ValueError(f"range start must lie in [{lo}, {hi}), got {start.flatten().tolist()}")
    start = start.float()
    if end is not None:
        if end.shape != start.shape:
            raise ValueError(f"end must have shape {tuple(start.shape)}, got {tuple(end.shape)}")
        if clamp_end:
            end = end.clamp(lo, hi)
        if not bool(((end >= lo) & (end <= hi)).all()):
            raise ValueError(f"range end must lie in [{lo}, {hi}], got {end.flatten().tolist()}")
        end = end.float()
    if n_time == 1:
        position = start
    else:
        if end is None:
            raise ValueError("a range end is needed when n_time > 1")
        fraction = torch.arange(n_time, dtype=torch.float32, device=start.device).view(1, n_time) / n_time
        position = start + (end - start) * fraction
    normalised = (position - lo) / (hi - lo)
    # Clamp: float32 rounding can carry a position just below `hi` onto it (a window starting on the last sample
    # of a song longer than 2**24 samples); the original then indexes past its table and fails, we use the last bin.
    return (bins * normalised).floor().long().clamp(0, bins - 1)


class LabelConditioner(nn.Module):
    """Embeds a prior's label vector `y` into its start token and (top level only) its time signal."""

    def __init__(
        self,
        y_bins: tuple[int, int],
        out_width: int,
        max_bow_genre_size: int,
        t_bins: int,
        sr: int,
        min_duration: float,
        max_duration: float,
        n_time: int,
        include_time_signal: bool,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        genre_bins, artist_bins = y_bins
        self.genre_bins, self.artist_bins = int(genre_bins), int(artist_bins)
        self.out_width = int(out_width)
        self.max_bow_genre_size = int(max_bow_genre_size)
        self.t_bins = int(t_bins)
        self.n_time = int(n_time)
        self.include_time_signal = bool(include_time_signal)
        self.total_length_range = (min_duration * sr, max_duration * sr)
        self.absolute_position_range = (0.0, max_duration * sr)
        self.relative_position_range = (0.0, 1.0)

        std = 0.01 * init_scale
        self.genre_embedding = nn.Embedding(self.genre_bins, self.out_width)
        self.artist_embedding = nn.Embedding(self.artist_bins, self.out_width)
        tables = [self.genre_embedding, self.artist_embedding]
        if self.include_time_signal:
            self.total_length_embedding = nn.Embedding(self.t_bins, self.out_width)
            self.absolute_position_embedding = nn.Embedding(self.t_bins, self.out_width)
            self.relative_position_embedding = nn.Embedding(self.t_bins, self.out_width)
            tables += [self.total_length_embedding, self.absolute_position_embedding, self.relative_position_embedding]
        for table in tables:
            nn.init.normal_(table.weight, std=std)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(start embedding (B, 1, width), time signal (B, n_time, width) or None) for `y` (B, >= 4 + genres).

        Columns after the genre slots (lyric tokens) are ignored.
        """
        n_labels = 4 + self.max_bow_genre_size
        if y.dim() != 2 or y.shape[1] < n_labels:
            raise ValueError(f"y must have shape (B, >= {n_labels}), got {tuple(y.shape)}")
        y = y[:, :n_labels].long()
        total_length, offset, length = y[:, 0:1], y[:, 1:2], y[:, 2:3]
        artist, genre = y[:, 3:4], y[:, 4:]

        if not bool(((artist >= 0) & (artist < self.artist_bins)).all()):
            raise ValueError(f"artist ids must lie in [0, {self.artist_bins}), got {artist.flatten().tolist()}")
        if not bool(((genre >= -1) & (genre < self.genre_bins)).all()):
            raise ValueError(f"genre ids must lie in [-1, {self.genre_bins}), got {genre.tolist()}")
        present = (genre >= 0).unsqueeze(-1).to(self.genre_embedding.weight.dtype)
        genres = (self.genre_embedding(genre.clamp(min=0)) * present).sum(dim=1, keepdim=True)
        start_embedding = genres + self.artist_embedding(artist)

        if not self.include_time_signal:
            return start_embedding, None
        total = total_length.float()
        start, end = offset.float(), (offset + length).float()
        total_bins = range_bins(total, None, 1, self.t_bins, *self.total_length_range)
        absolute_bins = range_bins(start, end, self.n_time, self.t_bins, *self.absolute_position_range)
        relative_bins = range_bins(
            start / total, end / total, self.n_time, self.t_bins, *self.relative_position_range, clamp_end=True
        )
        time_signal = (
            self.total_length_embedding(total_bins)
            + self.absolute_position_embedding(absolute_bins)
            + self.relative_position_embedding(relative_bins)
        )
        return start_embedding, time_signal
