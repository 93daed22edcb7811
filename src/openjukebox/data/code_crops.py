"""The prior training dataset: labelled windows of cached VQ-VAE codes (Jukebox §4 and §6; the original
re-encoded raw audio through the frozen VQ-VAE at every step, its issue #263).

An example for the prior of level L is a window of `n_ctx` codes of that level, cut from the codes that
`openjukebox data encode` cached for every song of an index, with
    upper  the codes of level L + 1 over the same stretch of audio (upsamplers only), and
    y      the label vector of the crop [total_length, offset, sample_length, artist, genres..., lyrics...],
           built exactly as `SongCrops` builds it for the audio crop the window covers (offset and lengths in
           audio samples: offset = start * hop_length, sample_length = n_ctx * hop_length).
Window starts are multiples of `cond_downsample` (codes of level L per code of level L + 1), so the upper
window is exactly `upper[start / cond_downsample : (start + n_ctx) / cond_downsample]`; windows stay inside the
song's audio (not its padding to the top hop).

As in `SongCrops`, a window is drawn from a song with probability proportional to its length, at a uniform
(aligned) start, and a batch is a pure function of (seed, index). With `balance="genre"` (or "artist") each genre
(a song's first genre tag; or each artist) gets the same share of the windows instead, and within one, songs
are drawn by length: a corpus where one source holds most of the hours (two hours of orchestral game music
beside one hour of sung synthetic songs) then no longer teaches the model mostly that source's sound.
Songs shorter than one window (or outside the top prior's timing range) are skipped and listed in `rejected`.
The codes of the needed levels are read once at construction and held in memory as int16: per hour of audio
2.5 MB for the top prior, 12.5 MB for the level-1 upsampler (levels 1 and 2), 50 MB for the level-0 upsampler
(levels 0 and 1).

Validation: `split="val"` keeps the songs whose content hash falls in the held-out fraction (a hash of the
content hash, so a song keeps its side when others are added), `split="train"` the others; with a fraction > 0
and at least two songs, at least one song is held out. `subset` cuts both sides from one "all" dataset.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import torch

from openjukebox.data.audio_folder import draw_crop
from openjukebox.data.code_cache import CodeCache
from openjukebox.data.index import SongIndex, SongRecord
from openjukebox.data.lyrics import VOCAB_V2, LyricsVocab
from openjukebox.data.songs import LabelIds, SongLabels, song_labels, without_artist_genre
from openjukebox.errors import OpenJukeboxError

log = logging.getLogger(__name__)

SPLITS = ("all", "train", "val")
BALANCES = ("length", "genre", "artist")  # how a window's song is drawn
_LISTED = 3  # names quoted in a message


def split_value(content_hash: str) -> float:
    """A song's uniform value in [0, 1): it is held out when the value is below the validation fraction."""
    digest = hashlib.sha256(f"openjukebox-val:{content_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _validation_songs(hashes: list[str], val_fraction: float) -> set[str]:
    """Content hashes of the held-out songs: those below the fraction, at least one, never all."""
    unique = set(hashes)
    if val_fraction <= 0 or len(unique) < 2:
        return set()
    val = {h for h in unique if split_value(h) < val_fraction} or {min(unique, key=split_value)}
    if val == unique:
        val.discard(max(val, key=split_value))
    return val


@dataclass(frozen=True)
class _CodedSong:
    path: str  # relative to the dataset root
    content_hash: str
    length: int  # audio samples (before the VQ-VAE's padding to the top hop)
    codes: np.ndarray  # (T_L,) int16/int32 codes of level L over the whole (padded) song
    upper: np.ndarray | None  # (T_{L+1},) codes of level L + 1 (upsamplers)
    labels: SongLabels | None  # None for priors without labels
    group: str  # the song's balancing group: its first genre tag or its artist (lower case; "" if none)


class CodeCrops:
    """Windows of `n_ctx` codes of `level` with their labels, from the code cache of the songs of `index`.

    Args:
        index: the song index ('ok' songs; read once, no connection kept, so it pickles to DataLoader workers).
        cache: the code cache of the VQ-VAE (`open_code_cache`), filled by `openjukebox data encode`.
        level: the prior's level (0 = bottom). Below the top level, batches carry the upper level's codes.
        n_ctx: codes per window (a multiple of cond_downsample below the top).
        ids: how artists/genres become ids (`VocabularyIds`, `OfficialIds`), or None for no labels (no `y`).
        n_tokens, lyrics_vocab, max_genres: as in `SongCrops`.
        split, val_fraction: "all" songs, or the "train" / held-out "val" side of a `val_fraction` split.
        min_length, max_length: songs outside [min_length, max_length) samples are skipped too (the top prior's
            timing embeddings cover song lengths in [min_duration, max_duration) only).
        lyric_jitter: songs with word timings get lyric windows moved off their true centre by a uniform random
            number of characters in [-lyric_jitter, lyric_jitter], drawn from the batch's generator (training
            only: the "val" subset has none). 0 = exactly centred windows.
        label_dropout: the share of training windows whose artist and genre are replaced by "unknown"
            (`without_artist_genre`), drawn from the batch's generator (the "val" subset has none): the prior
            also learns the unconditional distribution that classifier-free guidance samples against.
        balance: how a window's song is drawn: "length" (by its length, as the original), "genre" (every first
            genre tag the same share, then by length; songs without one form one group) or "artist" (likewise
            per artist). The "val" subset always draws by length, so its loss stays comparable between runs.
        sung_keys: windows also carry `sung` (n_ctx,): per code, the lyric key of the character sung then
            (`SongLabels.lyrics_and_sung_keys`; -1 for none, and everywhere in songs without word timings), the
            target of `prior train --align-loss`.
    """

    def __init__(
        self,
        index: SongIndex,
        cache: CodeCache,
        level: int,
        n_ctx: int,
        ids: LabelIds | None,
        *,
        n_tokens: int = 0,
        lyrics_vocab: LyricsVocab = VOCAB_V2,
        max_genres: int = 5,
        split: str = "all",
        val_fraction: float = 0.0,
        min_length: int = 0,
        max_length: int | None = None,
        lyric_jitter: int = 0,
        label_dropout: float = 0.0,
        balance: str = "length",
        sung_keys: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise OpenJukeboxError(f"the validation fraction must be in [0, 1), got {val_fraction}")
        if n_ctx <= 0:
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        self.root = index.root
        self.level, self.n_ctx, self.split = level, n_ctx, split
        self.n_tokens, self.lyrics_vocab = n_tokens, lyrics_vocab
        if lyric_jitter < 0:
            raise OpenJukeboxError(f"the lyric jitter must be >= 0 characters, got {lyric_jitter}")
        self.lyric_jitter = lyric_jitter
        if not 0.0 <= label_dropout < 1.0:
            raise OpenJukeboxError(f"the label dropout must be in [0, 1), got {label_dropout}")
        if label_dropout and ids is None:
            raise OpenJukeboxError("label dropout needs a prior with artist and genre labels")
        self.label_dropout, self.max_genres = label_dropout, max_genres
        if balance not in BALANCES:
            raise OpenJukeboxError(f"balance must be one of {', '.join(BALANCES)}, got {balance!r}")
        self.balance = balance
        if sung_keys and not (ids is not None and n_tokens):
            raise OpenJukeboxError("sung-character targets need a prior with lyrics")
        self.sung_keys = sung_keys
        self.rejected: list[tuple[str, str]] = []  # (path relative to root, reason)

        records = index.songs("ok")
        if not records:
            raise OpenJukeboxError(f"{self.root}: the index has no usable songs; run `openjukebox data index` first")
        # One song at a time (a codes file holds every level as int64): keep only this level's and the upper
        # level's codes, compactly, of the songs long enough to train on.
        missing: list[str] = []
        usable: list[tuple[SongRecord, int, np.ndarray, np.ndarray | None]] = []  # record, length, codes, upper
        for r in records:
            codes = cache.get(r.content_hash) if r.content_hash else None
            if codes is None:
                missing.append(r.path)
                continue
            if not hasattr(self, "hop_lengths"):
                self._set_geometry(codes.hop_lengths, codes.sample_rate, codes.l_bins, level, n_ctx)
            codes.check_compatible(self.hop_lengths, self.l_bins, self.sample_rate, str(cache.path(r.content_hash)))
            seconds = codes.length / self.sample_rate
            if codes.length < max(self.sample_length, min_length):
                need = max(self.sample_length, min_length) / self.sample_rate
                self.rejected.append((r.path, f"too short ({seconds:.2f} s; need {need:.2f} s)"))
            elif max_length is not None and codes.length >= max_length:
                self.rejected.append((r.path, f"too long ({seconds:.2f} s; at most {max_length / self.sample_rate} s)"))
            else:
                z = codes.zs[level][0].astype(self._dtype)  # (T_L,)
                upper = None if self.is_top else codes.zs[level + 1][0].astype(self._dtype)  # (T_{L+1},)
                usable.append((r, codes.length, z, upper))
        if missing:
            more = f" and {len(missing) - _LISTED} more" if len(missing) > _LISTED else ""
            raise OpenJukeboxError(
                f"{cache.folder}: {len(missing)} of {len(records)} indexed songs have no cached codes "
                f"({', '.join(missing[:_LISTED])}{more}); run `openjukebox data encode {self.root} --vqvae VQVAE`"
            )
        if not usable:
            raise OpenJukeboxError(
                f"{self.root}: none of {len(records)} songs has a usable length ({self.rejected[0][0]}: "
                f"{self.rejected[0][1]}; one window is {self.sample_length / self.sample_rate:.2f} s at level {level})"
            )
        if self.rejected:
            path, reason = self.rejected[0]
            log.warning(
                "%s: skipped %d of %d songs (%s: %s)", self.root, len(self.rejected), len(records), path, reason
            )

        self.songs: list[_CodedSong] = []
        for r, length, z, upper in usable:
            labels = None
            if ids is not None:
                labels = song_labels(
                    r, length, self.sample_rate, ids, n_tokens=n_tokens, lyrics_vocab=lyrics_vocab,
                    max_genres=max_genres,
                )  # fmt: skip
            group = (r.genres[0] if r.genres else "") if balance == "genre" else (r.artist or "")
            song = _CodedSong(r.path, r.content_hash, length, z, upper, labels, group.strip().lower())  # type: ignore[arg-type]
            self.songs.append(song)
        unknown = ids.unknown() if ids is not None else []
        if unknown:
            more = " ..." if len(unknown) > _LISTED else ""
            log.warning("%d names are not in the label ids and use id 0 (unknown): %s%s", len(unknown),
                        ", ".join(unknown[:_LISTED]), more)  # fmt: skip
        self.val_fraction = val_fraction
        self._keep("all")
        if split != "all":
            self._keep(split)

    def _keep(self, split: str) -> None:
        """Keep the songs of `split` (of the songs held now) and index them for drawing windows."""
        if split != "all":
            val = _validation_songs([s.content_hash for s in self.songs], self.val_fraction)
            self.songs = [s for s in self.songs if (s.content_hash in val) == (split == "val")]
            if not self.songs:
                raise OpenJukeboxError(f"{self.root}: no songs in the {split!r} split")
        self.split = split
        self.lengths = np.asarray([s.length for s in self.songs], dtype=np.int64)  # samples
        # Song i has units[i] aligned starts' worth of codes: a window of n_ctx codes must end inside the audio.
        self._units = self.lengths // self.hop_length // self.cond_downsample
        self._ends = np.cumsum(self._units)
        self._song_cdf = None  # balanced: cumulative probability of drawing each song
        if self.balance != "length":  # each group 1 / groups, shared within it by length
            _, group_of = np.unique([s.group for s in self.songs], return_inverse=True)
            group_units = np.bincount(group_of, weights=self._units)
            self._song_cdf = np.cumsum(self._units / group_units[group_of] / len(group_units))

    def subset(self, split: str) -> CodeCrops:
        """The "train" or "val" side of an "all" dataset, without reading the cache again (codes are shared)."""
        if self.split != "all" or split not in ("train", "val"):
            raise ValueError(f"subset({split!r}) of a {self.split!r} dataset; take 'train' or 'val' of 'all'")
        other = copy.copy(self)
        if split == "val":
            other.lyric_jitter, other.label_dropout, other.balance = 0, 0.0, "length"
        other._keep(split)
        return other

    def _set_geometry(
        self, hop_lengths: tuple[int, ...], sample_rate: int, l_bins: int, level: int, n_ctx: int
    ) -> None:
        """Hops, rate and window sizes, from the first codes file (all files of a cache share one VQ-VAE)."""
        self.hop_lengths, self.sample_rate, self.l_bins = tuple(hop_lengths), sample_rate, l_bins
        if not 0 <= level < len(self.hop_lengths):
            raise OpenJukeboxError(f"level {level} outside the VQ-VAE's levels 0..{len(self.hop_lengths) - 1}")
        self.hop_length = self.hop_lengths[level]
        self.is_top = level == len(self.hop_lengths) - 1
        # codes of this level per code of the level above (1 at the top: a window may start anywhere)
        self.cond_downsample = 1 if self.is_top else self.hop_lengths[level + 1] // self.hop_length
        if n_ctx % self.cond_downsample:
            raise OpenJukeboxError(f"n_ctx {n_ctx} is not a multiple of cond_downsample {self.cond_downsample}")
        self.sample_length = n_ctx * self.hop_length  # audio samples per window
        self._dtype = np.int16 if l_bins <= np.iinfo(np.int16).max else np.int32

    def __len__(self) -> int:
        return len(self.songs)

    def __repr__(self) -> str:
        seconds = self.lengths.sum() / self.sample_rate
        return (
            f"CodeCrops({str(self.root)!r}, level={self.level}, n_ctx={self.n_ctx}, split={self.split!r}: "
            f"{len(self)} songs, {seconds:.1f} s)"
        )

    def example_at(self, song: int, start: int, lyric_shift: int = 0) -> dict[str, np.ndarray]:
        """The window of song `song` (index into `songs`) starting at code `start` of this level:
        codes (n_ctx,), upper (n_ctx // cond_downsample,) below the top, y (y_length,) with labels; the lyric
        window of a song with word timings moved by `lyric_shift` characters."""
        s = self.songs[song]
        if start % self.cond_downsample or not 0 <= start <= self.lengths[song] // self.hop_length - self.n_ctx:
            raise ValueError(f"start {start} is not an aligned window start of {s.path}")
        out = {"codes": s.codes[start : start + self.n_ctx].astype(np.int64)}
        if s.upper is not None:
            u = start // self.cond_downsample
            out["upper"] = s.upper[u : u + self.n_ctx // self.cond_downsample].astype(np.int64)
        if s.labels is not None:
            window = (start * self.hop_length, self.sample_length, self.n_tokens, self.lyrics_vocab)
            if self.sung_keys:
                lyrics, out["sung"] = s.labels.lyrics_and_sung_keys(*window, self.hop_length, lyric_shift)
            else:
                lyrics = s.labels.lyrics(*window, lyric_shift)
            out["y"] = s.labels.label_vector(window[0], self.sample_length, lyrics)
        return out

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """(song, start code) of a random window; two draws from `rng`."""
        window = self.n_ctx // self.cond_downsample
        if self._song_cdf is None:
            song, unit = draw_crop(rng, self._ends, self._units, window)
        else:
            position = rng.random() * self._song_cdf[-1]
            song = min(int(np.searchsorted(self._song_cdf, position, side="right")), len(self) - 1)
            unit = int(rng.integers(self._units[song] - window + 1))
        return song, unit * self.cond_downsample

    def batch(self, seed: int, index: int, batch_size: int) -> dict[str, torch.Tensor]:
        """A batch, a pure function of (seed, index, batch_size): codes (B, n_ctx) int64; upper
        (B, n_ctx // cond_downsample) int64 below the top; y (B, y_length) int64 with labels; song, start (B,)."""
        if seed < 0 or index < 0 or batch_size <= 0:
            raise ValueError(f"need seed >= 0, index >= 0, batch_size > 0; got {seed}, {index}, {batch_size}")
        rng = np.random.default_rng([seed, index])
        draws = [self.draw(rng) for _ in range(batch_size)]
        shifts = [0] * batch_size
        if self.lyric_jitter and self.n_tokens:  # drawn after the windows: without jitter the stream is unchanged
            j = self.lyric_jitter
            shifts = [int(x) for x in rng.integers(-j, j + 1, size=batch_size)]
        examples = [self.example_at(song, start, shift) for (song, start), shift in zip(draws, shifts)]
        out = {k: torch.from_numpy(np.stack([e[k] for e in examples])) for k in examples[0]}
        if self.label_dropout:  # drawn last: without dropout the stream is unchanged
            dropped = torch.from_numpy(rng.random(batch_size) < self.label_dropout)
            out["y"] = without_artist_genre(out["y"], self.max_genres, dropped)
        out["song"] = torch.tensor([song for song, _ in draws], dtype=torch.int64)
        out["start"] = torch.tensor([start for _, start in draws], dtype=torch.int64)
        return out
