"""The labelled training dataset: random crops of the songs of a song index, with the labels Jukebox's priors
condition on.

Like the original Jukebox (Dhariwal et al. 2020, section 5.1; `FilesAudioDataset` and `Labeller`,
`data/files_dataset.py`, `data/labels.py`), an example is a crop of `sample_length` samples with
    total_length (the song's length in samples), offset (the crop start in samples),
    artist id, genre ids (the v2 bag of genre words, padded with -1 to `max_genres`),
    and, for lyric-conditioned priors, the window of `n_tokens` lyric characters that goes with the crop.
The window is the original linear heuristic (`lyric_window`: characters spread evenly over the song) unless the
song has word timings, in which case each character is placed inside its word (`lyric_window_from_words`).

As in `openjukebox.data.audio_folder`, a crop is taken from a song chosen with probability proportional to its
length, at a uniform start, and a batch is a pure function of (seed, index): no crop list, resumable from the
step number, buildable by any DataLoader worker in any order. Only the crop's frames are decoded.

Songs shorter than one crop are skipped and listed in `SongCrops.rejected`.

The per-song labels (`song_labels` -> `SongLabels`, with its lyric window and label vector) and the name -> id
maps (`VocabularyIds` for our own vocabularies, `OfficialIds` for the released models' tables) are shared with
`openjukebox.data.code_crops`, which cuts the same labelled crops from cached VQ-VAE codes instead of audio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from openjukebox.audio.io import resampled_length
from openjukebox.data.audio_folder import draw_crop, read_crop
from openjukebox.data.index import SongIndex, SongRecord
from openjukebox.data.lyrics import (
    VOCAB_V2,
    LyricsVocab,
    TimedLyrics,
    TimedWord,
    encode_lyrics,
    lyric_window,
    lyric_window_from_words,
    sung_keys,
)
from openjukebox.data.official_ids import IdTable
from openjukebox.data.vocab import Vocabulary, genre_words
from openjukebox.errors import OpenJukeboxError

log = logging.getLogger(__name__)


def song_genre_words(record: SongRecord) -> list[str]:
    """The v2 bag of genre words of a song: the words of each of its genres, in order, without repeats."""
    return _genre_word_bag(record.genres)


def build_vocabularies(index: SongIndex, min_count: int = 1) -> tuple[Vocabulary, Vocabulary]:
    """(artists, genres) vocabularies of the index's 'ok' songs; genres are v2 genre words ("Blues Rock" ->
    "blues", "rock"). Names seen fewer than `min_count` times go to the unknown bucket (id 0)."""
    songs = index.songs()
    artists = Vocabulary.build((s.artist or "" for s in songs), min_count, kind="artist")
    genres = Vocabulary.build((w for s in songs for w in song_genre_words(s)), min_count, kind="genre")
    return artists, genres


class LabelIds(Protocol):
    """How a song's artist and genres become label ids. Unknown names go to id 0 (the unknown bucket)."""

    def artist_id(self, artist: str | None) -> int: ...

    def genre_ids(self, genres: list[str]) -> list[int]: ...

    def unknown(self) -> list[str]:
        """The names looked up so far that fell back to id 0, for one warning."""
        ...


@dataclass
class VocabularyIds:
    """Our own ids (`labels.ids == "ours"`): names looked up in the vocabularies saved with the model; genres
    as the v2 bag of genre words."""

    artists: Vocabulary
    genres: Vocabulary
    _unknown: dict[str, None] = field(default_factory=dict, repr=False)

    def _get(self, vocab: Vocabulary, name: str) -> int:
        i = vocab.get(name, None)
        if i is None:
            self._unknown[f"{vocab.kind} {name!r}"] = None
        return i or 0

    def artist_id(self, artist: str | None) -> int:
        return self._get(self.artists, artist or "")

    def genre_ids(self, genres: list[str]) -> list[int]:
        return [self._get(self.genres, w) for w in _genre_word_bag(genres)]

    def unknown(self) -> list[str]:
        return list(self._unknown)


@dataclass
class OfficialIds:
    """The released models' ids (`labels.ids` "v2" or "v3", from `load_official_ids`): v2 genres are bags of
    words, v3 genres one whole phrase; as in the original, unknown names map to id 0."""

    artists: IdTable
    genres: IdTable
    _unknown: dict[str, None] = field(default_factory=dict, repr=False)

    def _get(self, table: IdTable, name: str) -> list[int]:
        ids = table.get(name, -1)
        if -1 in ids:
            self._unknown[f"{table.kind} {name!r}"] = None
        return [max(i, 0) for i in ids]

    def artist_id(self, artist: str | None) -> int:
        return self._get(self.artists, artist or "unknown")[0]

    def genre_ids(self, genres: list[str]) -> list[int]:
        if self.genres.version == "v3":
            return self._get(self.genres, genres[0]) if genres else []
        ids = [i for g in genres for i in self._get(self.genres, g)]
        return list(dict.fromkeys(ids))

    def unknown(self) -> list[str]:
        return list(self._unknown)


def _genre_word_bag(genres: list[str]) -> list[str]:
    words: dict[str, None] = {}
    for genre in genres:
        words.update(dict.fromkeys(genre_words(genre)))
    return list(words)


@dataclass(frozen=True)
class SongLabels:
    """The labels of one song that do not depend on the crop.

    length: the song's length in samples. artist: artist id. genre: (max_genres,) int64 ids, -1 = padding.
    tokens: (n,) int64 full lyric tokens (unused when `words` is set). words: spans in samples, or None.
    """

    length: int
    artist: int
    genre: np.ndarray
    tokens: np.ndarray
    words: tuple[TimedWord, ...] | None
    _timed: dict[LyricsVocab, TimedLyrics] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _timed_lyrics(self, vocab: LyricsVocab) -> TimedLyrics:
        """`words` encoded with `vocab`, once per vocabulary (every crop of the song uses them)."""
        assert self.words is not None
        timed = self._timed.get(vocab)
        if timed is None:
            timed = self._timed[vocab] = TimedLyrics.encode(self.words, vocab)
        return timed

    def lyrics(
        self, offset: int, sample_length: int, n_tokens: int, vocab: LyricsVocab, shift: int = 0
    ) -> np.ndarray | None:
        """(n_tokens,) int64 lyric window of the crop [offset, offset + sample_length), or None if n_tokens == 0.
        `shift` moves the window of a song with word timings by that many characters (training jitter)."""
        if not n_tokens:
            return None
        if self.words is not None:
            timed = self._timed_lyrics(vocab)
            return lyric_window_from_words(timed, self.length, offset, sample_length, n_tokens, vocab, shift)[0]
        return lyric_window(self.tokens, self.length, offset, sample_length, n_tokens)[0]

    def lyrics_and_sung_keys(
        self, offset: int, sample_length: int, n_tokens: int, vocab: LyricsVocab, hop_length: int, shift: int = 0
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The crop's lyric window (as `lyrics`) and, per code of the crop, (sample_length // hop_length,) int64,
        the key of that window that stands for the character sung then; all -1 for a song without word timings.
        The window is built once for both."""
        n_ctx = sample_length // hop_length
        if self.words is None or not n_tokens:
            return self.lyrics(offset, sample_length, n_tokens, vocab, shift), np.full(n_ctx, -1, dtype=np.int64)
        timed = self._timed_lyrics(vocab)
        tokens, indices = lyric_window_from_words(timed, self.length, offset, sample_length, n_tokens, vocab, shift)
        return tokens, sung_keys(timed, indices, offset, hop_length, n_ctx, vocab)

    def label_vector(self, offset: int, sample_length: int, lyrics: np.ndarray | None) -> np.ndarray:
        """The original label vector y (4 + max_genres + n_tokens,) int64:
        [total_length, offset, sample_length, artist, genres..., lyric tokens...]."""
        parts = [np.array([self.length, offset, sample_length, self.artist], dtype=np.int64), self.genre]
        if lyrics is not None:
            parts.append(lyrics)
        return np.concatenate(parts)


ARTIST_COLUMN, GENRE_COLUMN = 3, 4  # of the label vector y (`SongLabels.label_vector`)
UNKNOWN_ID = 0  # the artist and the genre "unknown" (the original's id 0 of both)


def without_artist_genre(y: torch.Tensor, max_genres: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """A copy of label vectors y (B, >= 4 + max_genres) whose artist and genres say "unknown" (artist 0, one genre
    0, the other genre slots -1), in `rows` (a (B,) bool mask) or every row: the labels of a song nobody tagged.
    Label dropout trains the prior on them and classifier-free guidance samples against them."""
    unknown = torch.full((1 + max_genres,), -1, dtype=y.dtype, device=y.device)
    unknown[:2] = UNKNOWN_ID  # the artist, the first genre slot
    out = y.clone()
    out[slice(None) if rows is None else rows, ARTIST_COLUMN : GENRE_COLUMN + max_genres] = unknown
    return out


def song_labels(
    record: SongRecord,
    length: int,
    sr: int,
    ids: LabelIds,
    *,
    n_tokens: int = 0,
    lyrics_vocab: LyricsVocab = VOCAB_V2,
    max_genres: int = 5,
) -> SongLabels:
    """The labels of `record`, a song of `length` samples at rate `sr`."""
    genre = np.full(max_genres, -1, dtype=np.int64)
    genre_ids = ids.genre_ids(record.genres)[:max_genres] or [0]  # no genre: the unknown bucket
    genre[: len(genre_ids)] = genre_ids
    words = None
    tokens = np.zeros(0, dtype=np.int64)
    if n_tokens:
        if record.words:
            words = tuple(TimedWord(w.word, w.start * sr, w.end * sr) for w in record.words)
        else:
            tokens = encode_lyrics(record.lyrics or "", lyrics_vocab).tokens
    return SongLabels(length, ids.artist_id(record.artist), genre, tokens, words)


@dataclass(frozen=True)
class SongExample:
    """One labelled crop.

    audio: (sample_length,) float32 mono.
    artist: artist id. genre: (max_genres,) int64 genre word ids, padded with -1.
    total_length, offset: the song's length and the crop start, in samples at the dataset's rate.
    lyrics: (n_tokens,) int64 lyric window (0 = padding), or None when n_tokens == 0.
    song: index into `SongCrops.songs`.
    """

    audio: np.ndarray
    artist: int
    genre: np.ndarray
    total_length: int
    offset: int
    lyrics: np.ndarray | None
    song: int


@dataclass(frozen=True)
class _Song(SongLabels):
    path: Path


class SongCrops:
    """Labelled random crops of `sample_length` samples at rate `sr` from the 'ok' songs of `index`.

    Args:
        index: the song index (read once at construction; the dataset keeps no database connection, so it
            pickles to DataLoader workers).
        sr, sample_length: rate and length of the crops.
        artists, genres: vocabularies (`build_vocabularies`, or those saved with a model); names they do not
            know get id 0 (unknown), as in the original.
        n_tokens: lyric window size (even; 0 = no lyrics, 512 for 5b_lyrics, 384 for 1b_lyrics).
        lyrics_vocab: the character table (VOCAB_V2, or VOCAB_V3 for 1b_lyrics).
        max_genres: genre word slots (5 for v2 labels, 1 for v3).
    """

    def __init__(
        self,
        index: SongIndex,
        sr: int,
        sample_length: int,
        artists: Vocabulary,
        genres: Vocabulary,
        *,
        n_tokens: int = 0,
        lyrics_vocab: LyricsVocab = VOCAB_V2,
        max_genres: int = 5,
    ) -> None:
        if sr <= 0 or sample_length <= 0:
            raise ValueError(f"need sr > 0 and sample_length > 0; got {sr}, {sample_length}")
        if n_tokens < 0 or n_tokens % 2:
            raise ValueError(f"n_tokens must be even and >= 0, got {n_tokens}")
        if max_genres <= 0:
            raise ValueError(f"max_genres must be positive, got {max_genres}")
        self.root = Path(index.root)
        self.sr = sr
        self.sample_length = sample_length
        self.artists = artists
        self.genres = genres
        self.n_tokens = n_tokens
        self.lyrics_vocab = lyrics_vocab
        self.max_genres = max_genres
        self.ids = VocabularyIds(artists, genres)
        self.songs: list[_Song] = []
        self.rejected: list[tuple[str, str]] = []  # (path relative to root, reason)
        records = index.songs()
        for r in records:
            if r.frames is None or r.sample_rate is None:
                self.rejected.append((r.path, "no header information"))
                continue
            length = resampled_length(r.frames, r.sample_rate, sr)
            if length < sample_length:
                self.rejected.append((r.path, f"too short ({length / sr:.2f} s; need {sample_length / sr:.2f} s)"))
                continue
            self.songs.append(self._song(r, length))
        if not self.songs:
            raise OpenJukeboxError(
                f"{self.root}: none of {len(records)} indexed songs is at least {sample_length / sr:.2f} s long"
            )
        if self.rejected:
            log.warning("%s: skipped %d of %d songs shorter than one crop", self.root, len(self.rejected), len(records))
        self.lengths = np.asarray([s.length for s in self.songs], dtype=np.int64)
        self._ends = np.cumsum(self.lengths)

    def _song(self, r: SongRecord, length: int) -> _Song:
        labels = song_labels(
            r,
            length,
            self.sr,
            self.ids,
            n_tokens=self.n_tokens,
            lyrics_vocab=self.lyrics_vocab,
            max_genres=self.max_genres,
        )
        return _Song(**{f.name: getattr(labels, f.name) for f in fields(SongLabels) if f.init}, path=self.root / r.path)

    def __len__(self) -> int:
        return len(self.songs)

    def __repr__(self) -> str:
        return (
            f"SongCrops({str(self.root)!r}, sr={self.sr}, sample_length={self.sample_length}, "
            f"n_tokens={self.n_tokens}: {len(self)} songs, {self.lengths.sum() / self.sr:.1f} s)"
        )

    def example_at(self, song: int, offset: int) -> SongExample:
        """The crop of song `song` (index into `songs`) starting at sample `offset`, with its labels."""
        s = self.songs[song]
        if not 0 <= offset <= s.length - self.sample_length:
            raise ValueError(f"offset {offset} outside [0, {s.length - self.sample_length}] for {s.path}")
        audio = read_crop(s.path, self.sr, offset, self.sample_length)
        lyrics = s.lyrics(offset, self.sample_length, self.n_tokens, self.lyrics_vocab)
        return SongExample(audio, s.artist, s.genre.copy(), s.length, offset, lyrics, song)

    def example(self, rng: np.random.Generator) -> SongExample:
        """A random example; two draws from `rng` decide the song (in proportion to its length) and the start."""
        i, offset = draw_crop(rng, self._ends, self.lengths, self.sample_length)
        return self.example_at(i, offset)

    def batch(self, seed: int, index: int, batch_size: int) -> dict[str, torch.Tensor]:
        """A batch, a pure function of (seed, index, batch_size):

        audio (B, sample_length) float32; artist (B,) int64; genre (B, max_genres) int64 (-1 = padding);
        total_length, offset, sample_length (B,) int64 in samples; fraction (B, 2) float32, the crop's
        (start, end) as fractions of the song; lyrics (B, n_tokens) int64 when n_tokens > 0; song (B,) int64;
        y (B, 4 + max_genres + n_tokens) int64, the original label vector
        [total_length, offset, sample_length, artist, genres..., lyric tokens...].
        """
        if seed < 0 or index < 0 or batch_size <= 0:
            raise ValueError(f"need seed >= 0, index >= 0, batch_size > 0; got {seed}, {index}, {batch_size}")
        rng = np.random.default_rng([seed, index])
        examples = [self.example(rng) for _ in range(batch_size)]
        total = np.array([e.total_length for e in examples], dtype=np.int64)
        offset = np.array([e.offset for e in examples], dtype=np.int64)
        length = np.full(batch_size, self.sample_length, dtype=np.int64)
        artist = np.array([e.artist for e in examples], dtype=np.int64)
        genre = np.stack([e.genre for e in examples])
        parts = [total[:, None], offset[:, None], length[:, None], artist[:, None], genre]
        out = {
            "audio": torch.from_numpy(np.stack([e.audio for e in examples])),
            "artist": torch.from_numpy(artist),
            "genre": torch.from_numpy(genre),
            "total_length": torch.from_numpy(total),
            "offset": torch.from_numpy(offset),
            "sample_length": torch.from_numpy(length),
            "fraction": torch.from_numpy(np.stack([offset / total, (offset + length) / total], axis=1)).float(),
            "song": torch.tensor([e.song for e in examples], dtype=torch.int64),
        }
        if self.n_tokens:
            lyrics = np.stack([e.lyrics for e in examples])
            out["lyrics"] = torch.from_numpy(lyrics)
            parts.append(lyrics)
        out["y"] = torch.from_numpy(np.concatenate(parts, axis=1))
        return out
