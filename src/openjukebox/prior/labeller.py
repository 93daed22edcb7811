"""Label vectors `y` from names: artist, genre, lyrics and the song position, for one prior level.

A prior conditions on `y` (B, y_length) int64 = [total_length, offset, sample_length (all in audio samples),
artist id, genre ids x max_bow_genre_size (-1 pads), lyric tokens x n_tokens] (Jukebox paper §3.4-3.5; the
original `Labeller` in `data/labels.py` and `SimplePrior.get_y`). `Labeller` builds it from names so that the
sampler, the CLI and the UI never assemble it by hand:

- ids come from where the config's `labels.ids` says: the official v2 (5b, 5b_lyrics, upsamplers) or v3
  (1b_lyrics) tables (`data.official_ids`), or our own vocabularies saved with the model (`data.vocab`).
  v2 genres are a bag of genre words ("Blues Rock" -> ids of "blues", "rock"), v3 genres a single id, ours the
  words of `data.vocab.genre_words` (as `data.songs.SongCrops` trains them). Unknown names: with the official
  tables a warning and id 0, as the original; with ours an `OpenJukeboxError` listing the closest known names,
  unless `unknown_ok` (then a warning and id 0, the unknown bucket).
- the lyric window is the original linear rule (`data.lyrics.lyric_window`: characters spread evenly over the
  song, window centred on the one sung mid-crop) over the v2 (80-token) or v3 (79-token) character table, or,
  for lyrics given as timed words, `lyric_window_from_words`. The window's indices (which character of the full
  lyrics each token is, -1 for padding) come with it: lyrics alignment needs them.
- `for_window(labels, start)` is the original `get_y`: the same song's labels for the window starting at token
  `start` of this level (sample_length set to this level's, offset moved by start * hop_length, lyric window
  recomputed). Sampling calls it for every window; the labels from `labels`/`batch` are the base it moves from.

Bit-exactness: the original computes the first label's window midpoint in float64 (`get_label`, Python ints)
and every later one in float32 (`set_y_lyric_tokens` receives 0-dim int64 tensors); we do the same, so both
`labels` and `for_window` match the original token for token (the two differ by one character in about one crop
in 10^4; the y a prior sees while sampling always comes from `for_window`, in the original as here).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from openjukebox.data.lyrics import (
    VOCABS,
    LyricsVocab,
    TimedLyrics,
    TimedWord,
    encode_lyrics,
    encode_timed_words,
    lyric_window,
    lyric_window_from_words,
)
from openjukebox.data.official_ids import IdTable, load_official_ids
from openjukebox.data.vocab import Vocabulary, genre_words
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior.config import PriorConfig

log = logging.getLogger(__name__)

Lyrics = str | Sequence[TimedWord]


@dataclass(frozen=True)
class SongLyrics:
    """One song's full lyrics as the prior sees them.

    tokens: (n,) int64 character tokens of the whole song (window indices point into them).
    text: the cleaned text the tokens spell (`text[i]` is token i's character).
    words: the timed words (spans in samples) the tokens come from, or None for plain text (linear rule).
    timed: `words` as encoded once for their lyric windows (set by `Labeller.song_lyrics`), or None.
    """

    tokens: np.ndarray
    text: str
    words: tuple[TimedWord, ...] | None = None
    timed: TimedLyrics | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SongMeta:
    """One song to label: names, lyrics (text, or words with spans in samples), length and start in samples."""

    artist: str
    genre: str
    lyrics: Lyrics
    total_length: int
    offset: int = 0


@dataclass(frozen=True)
class Labels:
    """Label vectors of a batch of songs and what is needed to move them to another window.

    y: (B, y_length) int64, the prior's label vector.
    indices: (B, n_tokens) int64, the position in `lyrics[b].tokens` of each lyric token of y (-1 for padding);
        None for priors without lyrics.
    lyrics: per row, the song's full lyrics.
    """

    y: torch.Tensor
    indices: torch.Tensor | None
    lyrics: tuple[SongLyrics, ...]

    def to(self, device: torch.device | str) -> Labels:
        indices = None if self.indices is None else self.indices.to(device)
        return replace(self, y=self.y.to(device), indices=indices)


def lyrics_vocab_for(n_vocab: int) -> LyricsVocab:
    """The character table with `n_vocab` tokens: v2 (80, 5b_lyrics and ours) or v3 (79, 1b_lyrics)."""
    for vocab in VOCABS.values():
        if vocab.n_vocab == n_vocab:
            return vocab
    known = ", ".join(f"{v.n_vocab} ({v.name})" for v in VOCABS.values())
    raise OpenJukeboxError(f"no lyric character table with {n_vocab} tokens; known: {known}")


class Labeller:
    """Builds the label vectors of one prior level from artist, genre and lyrics.

    Args:
        config: the prior's config (must have labels).
        artists, genres: our vocabularies (`checkpoints.prior.load_vocabularies`), required when
            `config.labels.ids == "ours"` and refused otherwise.
        ids_folder: folder of the official id tables (default: $OPENJUKEBOX_IDS or an installed original).
        unknown_ok: with our vocabularies, map unknown names to id 0 (with a warning) instead of failing.
    """

    def __init__(
        self,
        config: PriorConfig,
        artists: Vocabulary | None = None,
        genres: Vocabulary | None = None,
        *,
        ids_folder: str | os.PathLike | None = None,
        unknown_ok: bool = False,
    ) -> None:
        if config.labels is None:
            raise OpenJukeboxError("this prior has no label conditioning: it takes no label vector y")
        self.config = config
        self.label_config = lc = config.labels
        self.unknown_ok = unknown_ok
        self.n_tokens = config.n_tokens
        self.max_genres = lc.max_bow_genre_size
        self._cut_genres: set[str] = set()  # genres with more words than slots, warned about once
        self.sample_length = config.sample_length
        self.hop_length = config.hop_length
        self.lyrics_vocab = lyrics_vocab_for(config.lyrics.n_vocab) if config.lyrics is not None else None
        self.artists: Vocabulary | IdTable
        self.genres: Vocabulary | IdTable
        if lc.ids == "ours":
            if artists is None or genres is None:
                raise OpenJukeboxError(
                    "this prior uses its own artist/genre ids: its vocabularies (artists.json, genres.json) are needed"
                )
            self.artists, self.genres = artists, genres
            n_artists, n_genres = len(artists), len(genres)
        else:
            if artists is not None or genres is not None:
                raise OpenJukeboxError(
                    f"this prior uses the official {lc.ids} artist/genre ids; vocabularies must not be given"
                )
            self.artists, self.genres = load_official_ids(lc.ids, ids_folder)
            n_artists, n_genres = self.artists.n_ids, self.genres.n_ids
        if n_artists > lc.artist_bins or n_genres > lc.genre_bins:
            raise OpenJukeboxError(
                f"{n_artists} artist and {n_genres} genre ids do not fit the prior's label tables "
                f"({lc.artist_bins} artists, {lc.genre_bins} genres)"
            )

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike, *, unknown_ok: bool = False) -> Labeller:
        """The labeller of the prior saved in `folder` (its config and, for our own ids, its vocabularies)."""
        from openjukebox.checkpoints.prior import load_prior_config, load_vocabularies  # (that module imports prior)

        vocabularies = load_vocabularies(folder)
        artists, genres = vocabularies if vocabularies is not None else (None, None)
        return cls(load_prior_config(folder), artists, genres, unknown_ok=unknown_ok)

    # -- names to ids -------------------------------------------------------------------------------------------

    def artist_id(self, artist: str) -> int:
        if isinstance(self.artists, Vocabulary):
            return self._own_id(self.artists, artist)
        return self._official_ids(self.artists, artist)[0]

    def genre_ids(self, genre: str) -> list[int]:
        """The genre slots of y for `genre`, padded with -1 to max_bow_genre_size."""
        if isinstance(self.genres, Vocabulary):
            ids = [self._own_id(self.genres, word) for word in genre_words(genre)] or [0]  # as SongCrops
            if len(ids) > self.max_genres:
                if genre not in self._cut_genres:  # once, not for every window and sample
                    self._cut_genres.add(genre)
                    log.warning(
                        "genre %r has %d words; this prior takes %d, the rest are left out (as in training)",
                        genre,
                        len(ids),
                        self.max_genres,
                    )
                ids = ids[: self.max_genres]
        else:
            ids = self._official_ids(self.genres, genre)
            if len(ids) > self.max_genres:
                raise OpenJukeboxError(
                    f"genre {genre!r} has {len(ids)} words; this prior takes at most {self.max_genres}"
                )
        return ids + [-1] * (self.max_genres - len(ids))

    def _own_id(self, vocab: Vocabulary, name: str) -> int:
        if not self.unknown_ok:
            return vocab.id(name)  # raises with the closest known names
        found = vocab.get(name)
        if found is None:
            log.warning("unknown %s %r: using id 0 (unknown)", vocab.kind, name)
            return 0
        return found

    @staticmethod
    def _official_ids(table: IdTable, name: str) -> list[int]:
        try:
            return table.lookup(name)
        except OpenJukeboxError as e:
            log.warning("%s; using id 0 (unknown), as the original does", e)
            return table.get(name, 0)

    # -- lyrics -------------------------------------------------------------------------------------------------

    def song_lyrics(self, lyrics: Lyrics) -> SongLyrics:
        """Encode a song's lyrics (text, or timed words) with this prior's character table."""
        vocab = self.lyrics_vocab
        if vocab is None:
            return SongLyrics(np.zeros(0, dtype=np.int64), "")
        if isinstance(lyrics, str):
            encoded, words, timed = encode_lyrics(lyrics, vocab), None, None
        else:
            words = tuple(lyrics)
            if not all(isinstance(w, TimedWord) for w in words):
                raise OpenJukeboxError("lyrics must be a string or a sequence of TimedWord")
            encoded, char_ends = encode_timed_words(words, vocab)
            timed = TimedLyrics.of(words, encoded.tokens, char_ends)
        if encoded.dropped:
            log.warning(
                "lyrics: characters outside the %s lyric vocabulary were left out: %s",
                vocab.name,
                " ".join(repr(c) for c in encoded.dropped),
            )
        return SongLyrics(encoded.tokens, encoded.chars, words, timed)

    def _window(self, song: SongLyrics, total_length: int, offset: int, duration: int, float32: bool):
        """(tokens (n_tokens,), indices (n_tokens,)) of the lyric window of one crop."""
        assert self.lyrics_vocab is not None
        if song.words is not None:
            words = song.timed if song.timed is not None else song.words  # `timed` is None if built by hand
            return lyric_window_from_words(words, total_length, offset, duration, self.n_tokens, self.lyrics_vocab)
        return lyric_window(song.tokens, total_length, offset, duration, self.n_tokens, float32=float32)

    # -- label vectors ------------------------------------------------------------------------------------------

    def _check_position(self, total_length: int, offset: int) -> None:
        if not 0 <= offset < total_length:
            raise OpenJukeboxError(f"offset {offset} lies outside the song [0, {total_length}) samples")
        lc = self.label_config
        if lc.timing:
            sr = self.config.sample_rate
            lo, hi = lc.min_duration * sr, lc.max_duration * sr
            if not lo <= total_length < hi:
                raise OpenJukeboxError(
                    f"song length {total_length / sr:.2f} s is outside this prior's range "
                    f"[{lc.min_duration}, {lc.max_duration}) s"
                )

    def labels(self, artist: str, genre: str, lyrics: Lyrics, total_length: int, offset: int = 0) -> Labels:
        """Labels (y (1, y_length)) of one song's window of this level's sample_length starting at `offset`.

        total_length and offset are in audio samples; lyrics is text or timed words (spans in samples).
        """
        return self.batch([SongMeta(artist, genre, lyrics, total_length, offset)])

    def batch(self, songs: Sequence[SongMeta | Mapping]) -> Labels:
        """Labels of several songs (each a `SongMeta` or a mapping of its fields, as the original's `metas`)."""
        if not songs:
            raise ValueError("no songs to label")
        rows, indices, lyrics = [], [], []
        for song in songs:
            meta = song if isinstance(song, SongMeta) else SongMeta(**song)
            total_length, offset = int(meta.total_length), int(meta.offset)
            self._check_position(total_length, offset)
            head = [total_length, offset, self.sample_length, self.artist_id(meta.artist), *self.genre_ids(meta.genre)]
            song_lyrics = self.song_lyrics(meta.lyrics)
            window = np.zeros(0, dtype=np.int64)
            if self.n_tokens:
                window, index = self._window(song_lyrics, total_length, offset, self.sample_length, float32=False)
                indices.append(index)
            rows.append(np.concatenate([np.asarray(head, dtype=np.int64), window]))
            lyrics.append(song_lyrics)
        y = torch.from_numpy(np.stack(rows))  # (B, y_length)
        assert y.shape[1] == self.config.y_length, (tuple(y.shape), self.config.y_length)
        return Labels(y, torch.from_numpy(np.stack(indices)) if self.n_tokens else None, tuple(lyrics))

    def for_window(self, labels: Labels, start: int) -> Labels:
        """The labels of the window starting at token `start` of this level (the original `SimplePrior.get_y`).

        `labels` are the base labels from `labels`/`batch` (not a window's): the window's offset is their
        offset + start * hop_length, its length this level's sample_length, and the lyric window
        is recomputed for it. y stays on the device of `labels.y`.
        """
        if start < 0:
            raise ValueError(f"window start must be >= 0, got {start}")
        if labels.y.dim() != 2 or labels.y.shape[1] != self.config.y_length:
            raise ValueError(f"labels.y must have shape (B, {self.config.y_length}), got {tuple(labels.y.shape)}")
        if len(labels.lyrics) != labels.y.shape[0]:
            raise ValueError(f"{len(labels.lyrics)} songs' lyrics for {labels.y.shape[0]} label rows")
        y = labels.y.clone()
        y[:, 2] = self.sample_length
        y[:, 1] += int(start) * self.hop_length
        if not self.n_tokens:
            return Labels(y, None, labels.lyrics)
        head = y[:, :3].cpu().tolist()
        windows, indices = [], []
        for (total_length, offset, duration), song in zip(head, labels.lyrics):
            window, index = self._window(song, total_length, offset, duration, float32=True)
            windows.append(window)
            indices.append(index)
        y[:, -self.n_tokens :] = torch.from_numpy(np.stack(windows)).to(y.device)
        return Labels(y, torch.from_numpy(np.stack(indices)).to(y.device), labels.lyrics)
