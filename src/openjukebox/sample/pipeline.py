"""The generation pipeline: the VQ-VAE and the three priors, with the original's four verbs.

- `ancestral_sample`: every level from nothing, top first;
- `primed_sample`: encode an audio prompt to codes at every level, then continue every level;
- `continue_sample`: extend saved codes (all levels) to a longer song;
- `upsample`: keep the saved top-level codes and render the levels below.

Each level is sampled window by window (`windows.plan_level`); a window's sampler gets the tokens already present in
it as its prompt, the codes of the level above over the same span (upsamplers), and the window's label vector
(offset and lyric window moved to the window, `Labeller.for_window`). The prompt is run through a fresh key/value
cache, as the original does: in the new window the same tokens sit at other positions, with other position
embeddings, timing signal, lyric window and codes above, so no key or value of the previous window's cache is valid
there (reusing them would change the codes). The work of one window is a pure function of the codes so far and a
generator seeded from (seed, level, window start, batch chunk), so a run stopped after any window and resumed from
its saved codes produces the same bits as an uninterrupted one. With `generator` given instead, every window and
batch chunk draws from that one generator in turn, top level first, as the original's loop draws from torch's global
generator: seeded like the original's, it gives the original's codes (a resumed run then needs that generator's
state as it was after the last saved window). `on_window` is called after every window (the run folder saves its
state there) and `on_level` after every level (preview decodes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior
from openjukebox.prior.labeller import Labeller, Labels, SongMeta
from openjukebox.sample.settings import LevelSampling, default_sampling
from openjukebox.sample.windows import Window, plan_level, upper_slice
from openjukebox.vqvae import VQVAE


@dataclass(frozen=True)
class WindowRequest:
    """What one window's sampler gets. context: (B, c) tokens already in the window; upper: (B, n_ctx / 4) codes
    of the level above or None; y: (B, y_length) label vector or None; length: tokens the window must end with."""

    prior: Prior
    context: torch.Tensor
    length: int
    upper: torch.Tensor | None
    y: torch.Tensor | None
    settings: LevelSampling
    generator: torch.Generator
    progress: Callable[[int], None] | None = None  # called with the number of new tokens done so far


WindowSampler = Callable[[WindowRequest], torch.Tensor]  # -> (B, length) tokens, starting with the context


@dataclass
class Song:
    """What to generate: names, lyrics and the song's length in audio samples (the timing conditioning)."""

    artist: str = "unknown"
    genre: str = "unknown"
    lyrics: str = ""
    total_length: int = 0  # samples; the length the timing embeddings and lyric windows assume
    offset: int = 0  # samples before the first generated one (0 unless continuing a longer song)


@dataclass
class Progress:
    """Counters shown by progress bars, per level: windows done / total, and new tokens (all samples together)
    done / total, the total being what this level still had to sample when it started (a resumed run counts
    only what is left)."""

    level: int = -1
    windows_done: int = 0
    windows_total: int = 0
    tokens_done: int = 0
    tokens_total: int = 0


def window_seed(seed: int, level: int, start: int, chunk: int) -> int:
    """Seed of one window's generator: depends only on the run seed and where the window is."""
    return int(np.random.SeedSequence([seed, level, start, chunk]).generate_state(1, dtype=np.uint64)[0] >> 1)


class Pipeline:
    """The VQ-VAE, one prior per level and their labellers. Priors stay where they are (CPU by default) and are
    moved to `device` one level at a time while that level is sampled."""

    def __init__(
        self,
        vqvae: VQVAE,
        priors: Mapping[int, Prior],
        labellers: Mapping[int, Labeller | None],
        window_sampler: WindowSampler,
        device: torch.device | str = "cpu",
    ) -> None:
        self.vqvae = vqvae
        self.priors = dict(priors)
        self.labellers = dict(labellers)
        self.window_sampler = window_sampler
        self.device = torch.device(device)
        self.levels = vqvae.levels
        for level, prior in self.priors.items():
            c = prior.config
            if c.level != level:
                raise OpenJukeboxError(f"the prior given for level {level} is a level-{c.level} prior")
            if tuple(vqvae.hop_lengths[: level + 1])[-1] != c.hop_length or vqvae.config.l_bins != c.bins:
                raise OpenJukeboxError(
                    f"level-{level} prior (hop {c.hop_length}, {c.bins} codes) does not match the VQ-VAE "
                    f"(hop {vqvae.hop_lengths[level]}, {vqvae.config.l_bins} codes)"
                )

    @property
    def top_level(self) -> int:
        return self.levels - 1

    def level_tokens(self, length: int, level: int) -> int:
        """Tokens of `level` for a song of `length` audio samples (a multiple of the top hop)."""
        return length // self.vqvae.hop_lengths[level]

    # -- the four verbs -----------------------------------------------------------------------------------------

    def ancestral_sample(self, song: Song, n_samples: int, length: int, seed: int, **kw) -> dict[int, torch.Tensor]:
        zs = {level: torch.zeros(n_samples, 0, dtype=torch.long) for level in range(self.levels)}
        return self.sample_levels(zs, song, length, list(range(self.levels)), seed, **kw)

    def primed_sample(self, prompt: torch.Tensor, song: Song, length: int, seed: int, **kw) -> dict[int, torch.Tensor]:
        """prompt: (n_samples, T) audio, T a multiple of the top hop and shorter than `length` samples."""
        if prompt.shape[-1] >= length:
            raise OpenJukeboxError(
                f"the prompt ({prompt.shape[-1]} samples) must be shorter than the song ({length} samples)"
            )
        return self.sample_levels(self.encode_prompt(prompt), song, length, list(range(self.levels)), seed, **kw)

    def encode_prompt(self, prompt: torch.Tensor) -> dict[int, torch.Tensor]:
        """Codes of every level (on the CPU) of a (n_samples, T) audio prompt: what primed sampling continues."""
        with torch.no_grad():
            codes = self.vqvae.encode(prompt.float())
        return {level: z.long().cpu() for level, z in enumerate(codes)}

    def continue_sample(
        self, zs: Mapping[int, torch.Tensor], song: Song, length: int, seed: int, **kw
    ) -> dict[int, torch.Tensor]:
        return self.sample_levels(dict(zs), song, length, list(range(self.levels)), seed, **kw)

    def upsample(
        self, zs: Mapping[int, torch.Tensor], song: Song, length: int, seed: int, **kw
    ) -> dict[int, torch.Tensor]:
        if self.top_level not in zs or zs[self.top_level].shape[1] * self.vqvae.hop_lengths[-1] < length:
            raise OpenJukeboxError("upsampling needs top-level codes covering the whole song")
        zs = dict(zs)
        for level in range(self.top_level):
            zs.setdefault(level, torch.zeros(zs[self.top_level].shape[0], 0, dtype=torch.long))
        return self.sample_levels(zs, song, length, list(range(self.top_level)), seed, **kw)

    # -- the loop -----------------------------------------------------------------------------------------------

    def base_labels(self, level: int, song: Song, n_samples: int) -> Labels | None:
        labeller = self.labellers.get(level)
        if labeller is None:
            return None
        total = song.total_length
        lc = self.priors[level].config.labels
        if lc is not None and lc.timing:
            # A song shorter than the prior's shortest training song is labelled as the shortest one (the timing
            # embeddings have no bin for it); the original refuses such lengths.
            total = max(total, math.ceil(lc.min_duration * self.priors[level].config.sample_rate))
        meta = SongMeta(song.artist, song.genre, song.lyrics, total, song.offset)
        return labeller.batch([meta] * n_samples)

    def sample_levels(
        self,
        zs: dict[int, torch.Tensor],
        song: Song,
        length: int,
        levels: Sequence[int],
        seed: int,
        settings: Mapping[int, LevelSampling] | None = None,
        on_window: Callable[[int, Window, dict[int, torch.Tensor]], None] | None = None,
        on_level: Callable[[int, dict[int, torch.Tensor]], None] | None = None,
        progress: Callable[[Progress], None] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[int, torch.Tensor]:
        """Sample `levels` (top first) until each holds the codes of `length` audio samples.

        generator: None (each window seeded from `seed` and its position), or one generator on this pipeline's
        device that every window draws from in turn (the original's single stream; `seed` is then unused).
        """
        top_hop = self.vqvae.hop_lengths[-1]
        if length <= 0 or length % top_hop:
            raise OpenJukeboxError(f"song length must be a positive multiple of {top_hop} samples, got {length}")
        if song.total_length < song.offset + length:
            song = Song(song.artist, song.genre, song.lyrics, song.offset + length, song.offset)
        settings = dict(settings or {})
        for level in sorted(levels, reverse=True):
            if level not in self.priors:
                raise OpenJukeboxError(f"no prior for level {level}")
            zs[level] = self._sample_level(
                zs,
                level,
                song,
                length,
                seed,
                settings.get(level) or default_sampling(level, self.top_level),
                on_window,
                progress,
                generator,
            )
            if on_level is not None:
                on_level(level, zs)
        return zs

    def _sample_level(
        self,
        zs: dict[int, torch.Tensor],
        level: int,
        song: Song,
        length: int,
        seed: int,
        settings: LevelSampling,
        on_window: Callable[[int, Window, dict[int, torch.Tensor]], None] | None,
        progress: Callable[[Progress], None] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        prior = self.priors[level]
        c = prior.config
        total = self.level_tokens(length, level)
        z = zs[level]
        n_samples = z.shape[0]
        if z.shape[1] > total:
            z = z[:, :total]
        hop = max(1, int(settings.hop_fraction * c.n_ctx))
        align = c.cond_downsample or 1
        windows = plan_level(total, z.shape[1], c.n_ctx, hop, align)
        if not windows:
            return z
        upper_codes = None
        if c.cond_downsample is not None:
            upper_codes = zs.get(level + 1)
            if upper_codes is None or upper_codes.shape[1] * c.cond_downsample < total:
                raise OpenJukeboxError(f"level {level} needs the codes of level {level + 1} for the whole song")
        labels = self.base_labels(level, song, n_samples)
        new_tokens = sum(w.new_tokens for w in windows) * n_samples
        state = Progress(level=level, windows_total=len(windows), tokens_total=new_tokens)
        prior.to(self.device)
        try:
            for window in windows:
                z = self._sample_window(
                    prior, z, upper_codes, labels, window, level, seed, settings, state, progress, generator
                )
                zs[level] = z
                state.windows_done += 1
                if progress is not None:
                    progress(state)
                if on_window is not None:
                    on_window(level, window, zs)
        finally:
            if self.device.type != "cpu":
                prior.to("cpu")
        return z

    def _sample_window(
        self,
        prior: Prior,
        z: torch.Tensor,
        upper_codes: torch.Tensor | None,
        labels: Labels | None,
        window: Window,
        level: int,
        seed: int,
        settings: LevelSampling,
        state: Progress,
        progress: Callable[[Progress], None] | None,
        stream: torch.Generator | None,
    ) -> torch.Tensor:
        c = prior.config
        n_samples = z.shape[0]
        context = z[:, window.start : window.start + window.context]
        upper = None
        if upper_codes is not None:
            lo, hi = upper_slice(window, c.n_ctx, c.cond_downsample)
            upper = upper_codes[:, lo:hi]
            if upper.shape[1] < hi - lo:  # a song shorter than one window: pad the codes above with 0
                upper = torch.nn.functional.pad(upper, (0, hi - lo - upper.shape[1]))
        y = None
        if labels is not None:
            y = self.labellers[level].for_window(labels, window.start).y
        new = []
        batch = settings.max_batch_size
        for chunk, lo in enumerate(range(0, n_samples, batch)):
            hi = min(lo + batch, n_samples)
            generator = stream
            if generator is None:
                generator = torch.Generator(self.device).manual_seed(window_seed(seed, level, window.start, chunk))

            def tick(done: int, base: int = state.tokens_done, rows: int = hi - lo) -> None:
                state.tokens_done = base + done * rows
                if progress is not None:
                    progress(state)

            request = WindowRequest(
                prior,
                context[lo:hi].to(self.device),
                window.length,
                None if upper is None else upper[lo:hi].to(self.device),
                None if y is None else y[lo:hi].to(self.device),
                settings,
                generator,
                tick,
            )
            with torch.no_grad():
                out = self.window_sampler(request)
            if out.shape != (hi - lo, window.length):
                raise RuntimeError(f"window sampler returned {tuple(out.shape)}, expected {(hi - lo, window.length)}")
            new.append(out[:, window.context :].cpu())
            tick(window.new_tokens)
        return torch.cat([z[:, : window.start + window.context], torch.cat(new)], dim=1)


def seconds_to_length(seconds: float, sample_rate: int, top_hop: int) -> int:
    """Audio samples for `seconds`, rounded down to a multiple of the top hop (at least one hop)."""
    return max(top_hop, math.floor(seconds * sample_rate / top_hop) * top_hop)
