"""Lyrics as the lyric-conditioned priors see them: cleaned text, character tokens, and the window of them
that goes with one crop of a song.

Rules follow the original Jukebox (Dhariwal et al. 2020, section 3.5 "Lyrics conditioning"), as found in
the reference package `jukebox_infer` (a copy of `jukebox/data/`):

- Normalisation (`TextProcessor.clean`, `data/text_processor.py`): transliterate to ASCII with `unidecode`,
  turn every backslash into a newline, then delete every character outside the vocabulary. We do the same but
  list the deleted characters (`LyricsTokens.dropped`) instead of losing them silently.
- Vocabulary (`TextProcessor.__init__`): token 0 is padding (`<unk>`, decodes to ''), then A-Z, a-z, 0-9,
  `.,:;!?-+'"()[]`, space, tab, newline as tokens 1, 2, ... The v2 table (5b, 5b_lyrics) has 80 tokens; the
  v3 table (1b_lyrics) forgot '+' and has 79, so every id after '-' is one lower than in v2.
- Window (`get_relevant_lyric_tokens`, `data/labels.py`): the characters are assumed spread evenly over the
  song; the window of `n_tokens` characters is centred on the character sung at the middle of the crop,
  clamped to stay inside the lyrics, and lyrics shorter than the window are left-padded with 0.

`lyric_window_from_words` is ours: with word timings (e.g. from an aligner) each character is placed inside
its word's span instead of being spread evenly over the whole song, then the same centred window is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from unidecode import unidecode

from openjukebox.errors import OpenJukeboxError

_V3_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:;!?-'\"()[] \t\n"
_V2_CHARS = _V3_CHARS.replace("-", "-+")


@dataclass(frozen=True)
class LyricsVocab:
    """A character table: character `chars[i]` is token i + 1; token 0 is padding."""

    name: str
    chars: str

    @property
    def n_vocab(self) -> int:
        return len(self.chars) + 1

    def token(self, char: str) -> int:
        return self.chars.index(char) + 1


VOCAB_V2 = LyricsVocab("v2", _V2_CHARS)  # 80 tokens: 5b_lyrics (and the label tables of 5b and the upsamplers)
VOCAB_V3 = LyricsVocab("v3", _V3_CHARS)  # 79 tokens: 1b_lyrics
VOCABS = {"v2": VOCAB_V2, "v3": VOCAB_V3}


@dataclass(frozen=True)
class LyricsTokens:
    """Encoded lyrics.

    tokens: (n,) int64, one per character of `chars`, values in [1, n_vocab).
    chars: the cleaned text the tokens spell.
    dropped: distinct input characters (in order of first appearance) that did not survive whole because
        they, or part of their transliteration, are outside the vocabulary (e.g. '*', '&', '😀'); see
        `encode_lyrics`.
    """

    tokens: np.ndarray
    chars: str
    dropped: list[str]


def normalize_lyrics(text: str) -> str:
    """Transliterate to ASCII and turn backslashes into newlines (before out-of-vocabulary characters go)."""
    return unidecode(text).replace("\\", "\n")


def encode_lyrics(text: str, vocab: LyricsVocab = VOCAB_V2) -> LyricsTokens:
    """Clean `text` like the original `TextProcessor.clean` and tokenise it.

    A character is reported in `dropped` when anything of its transliteration is deleted: '*' (deleted),
    '😀' (unidecode gives ''), '½' (gives ' 1/2', and '/' is deleted). unidecode works character by character,
    so cleaning each character on its own gives the same text as the original's cleaning of the whole string.
    """
    allowed = set(vocab.chars)
    pieces: list[str] = []
    dropped: dict[str, None] = {}  # an ordered set
    cache: dict[str, str] = {}
    for c in text:
        kept = cache.get(c)
        if kept is None:
            ascii_c = normalize_lyrics(c)
            kept = "".join(a for a in ascii_c if a in allowed)
            cache[c] = kept
            if kept != ascii_c or not ascii_c:
                dropped[c] = None
        pieces.append(kept)
    chars = "".join(pieces)
    table = {c: i + 1 for i, c in enumerate(vocab.chars)}
    tokens = np.fromiter((table[c] for c in chars), dtype=np.int64, count=len(chars))
    return LyricsTokens(tokens=tokens, chars=chars, dropped=list(dropped))


def decode_lyrics(tokens: Sequence[int] | np.ndarray, vocab: LyricsVocab = VOCAB_V2) -> str:
    """The text of `tokens`; padding (0) decodes to '' as in the original `TextProcessor.textise`."""
    return "".join(vocab.chars[t - 1] for t in np.asarray(tokens).tolist() if t != 0)


def _centred_window(tokens: np.ndarray, midpoint: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n_tokens` tokens around `midpoint` (clamped to stay inside), or all of them left-padded with 0.

    Returns (window (n_tokens,) int64, indices (n_tokens,) int64 into `tokens`, -1 for padding).
    """
    if n_tokens % 2:
        # The original slices [mid - n//2, mid + n//2), which is one short for odd n (its assert then fails).
        raise ValueError(f"n_tokens must be even, got {n_tokens}")
    n = len(tokens)
    if n < n_tokens:
        indices = np.concatenate([np.full(n_tokens - n, -1, dtype=np.int64), np.arange(n, dtype=np.int64)])
    else:
        half = n_tokens // 2
        midpoint = min(max(midpoint, half), n - half)
        indices = np.arange(midpoint - half, midpoint + half, dtype=np.int64)
    window = np.zeros(n_tokens, dtype=np.int64)
    window[indices >= 0] = np.asarray(tokens, dtype=np.int64)[indices[indices >= 0]]
    return window, indices


def _check_crop(total_length: int, offset: int, duration: int) -> None:
    if not 0 <= offset < total_length:
        raise ValueError(f"offset {offset} outside the song [0, {total_length})")
    if duration < 0:
        raise ValueError(f"negative duration {duration}")


def lyric_window(
    tokens: Sequence[int] | np.ndarray,
    total_length: int,
    offset: int,
    duration: int,
    n_tokens: int,
    *,
    float32: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The original linear window (`get_relevant_lyric_tokens`, `data/labels.py`).

    Character k is taken to end at (k + 1) * total_length / n; the window is centred on
        midpoint = int(n * (offset + duration / 2) / total_length)
    (the character sung at the middle of the crop), clamped to [n_tokens / 2, n - n_tokens / 2], and is
    tokens[midpoint - n_tokens / 2 : midpoint + n_tokens / 2]. With fewer than n_tokens characters, all of them
    are returned left-padded with 0 (indices -1).

    Args:
        tokens: (n,) the song's full lyric tokens (`encode_lyrics(...).tokens`).
        total_length, offset, duration: the song length, the crop start and the crop length, all in samples.
        n_tokens: window size (even; 512 for 5b_lyrics, 384 for 1b_lyrics).
        float32: compute the midpoint in float32. The original's first label (`Labeller.get_label`) uses
            Python floats (float64, our default), but during sampling `set_y_lyric_tokens` passes 0-dim int64
            tensors, so there `duration / 2.0` and all that follows is float32; the two differ by one
            character in rare cases (about 1 in 10^4 random crops).
    Returns:
        window (n_tokens,) int64, indices (n_tokens,) int64 positions in `tokens` (-1 for padding).
    """
    _check_crop(total_length, offset, duration)
    n = len(tokens)
    if float32:
        f = np.float32
        midpoint = int(f(n) * (f(offset) + f(duration) / f(2.0)) / f(total_length))
    else:
        midpoint = int(n * (offset + duration / 2.0) / total_length)
    return _centred_window(np.asarray(tokens), midpoint, n_tokens)


@dataclass(frozen=True)
class TimedWord:
    """One sung word and its span in samples (start <= end)."""

    text: str
    start: float
    end: float


def encode_timed_words(words: Sequence[TimedWord], vocab: LyricsVocab = VOCAB_V2) -> tuple[LyricsTokens, np.ndarray]:
    """Encode words joined by single spaces (none after a word whose text already ends in whitespace, e.g.
    '\\n' for a line break) and give every character the time, in samples, at which it ends.

    A word's characters share its span evenly: character j of m ends at start + (end - start) * (j + 1) / m.
    The space after a word ends when the next word starts.

    Returns:
        (LyricsTokens of the joined text, char_ends (n,) float64).
    """
    parts: list[LyricsTokens] = []
    ends: list[np.ndarray] = []
    space = vocab.token(" ")
    dropped: dict[str, None] = {}
    previous_start = -np.inf
    for i, word in enumerate(words):
        if not word.start <= word.end:
            raise OpenJukeboxError(f"word {i} {word.text!r}: start {word.start} after end {word.end}")
        if word.start < previous_start:
            raise OpenJukeboxError(f"word {i} {word.text!r}: starts at {word.start}, before the word before it")
        previous_start = word.start
        encoded = encode_lyrics(word.text, vocab)
        dropped.update(dict.fromkeys(encoded.dropped))
        m = len(encoded.tokens)
        parts.append(encoded)
        ends.append(word.start + (word.end - word.start) * np.arange(1, m + 1, dtype=np.float64) / max(m, 1))
        is_last = i == len(words) - 1
        if not is_last and not word.text[-1:].isspace():
            parts.append(LyricsTokens(np.array([space], dtype=np.int64), " ", []))
            ends.append(np.array([max(word.end, words[i + 1].start)], dtype=np.float64))
    tokens = np.concatenate([p.tokens for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    char_ends = np.concatenate(ends) if ends else np.zeros(0, dtype=np.float64)
    return LyricsTokens(tokens, "".join(p.chars for p in parts), list(dropped)), char_ends


@dataclass(frozen=True)
class TimedLyrics:
    """Timed words encoded once: the joined text's tokens and each character's end (`encode_timed_words`), and
    each word's start and end, all in samples. `lyric_window_from_words` and `sung_keys` take it in place of the
    words, for a song whose crops are drawn many times (`SongLabels`)."""

    tokens: np.ndarray
    char_ends: np.ndarray
    word_starts: np.ndarray
    word_ends: np.ndarray

    @classmethod
    def encode(cls, words: Sequence[TimedWord] | TimedLyrics, vocab: LyricsVocab = VOCAB_V2) -> TimedLyrics:
        """`words` encoded with `vocab` (returned as they are if already encoded)."""
        if isinstance(words, TimedLyrics):
            return words
        encoded, char_ends = encode_timed_words(words, vocab)
        return cls.of(words, encoded.tokens, char_ends)

    @classmethod
    def of(cls, words: Sequence[TimedWord], tokens: np.ndarray, char_ends: np.ndarray) -> TimedLyrics:
        """From `words` and what `encode_timed_words(words, vocab)` returned for them (tokens, char_ends)."""
        starts = np.array([w.start for w in words], dtype=np.float64)
        return cls(tokens, char_ends, starts, np.array([w.end for w in words], dtype=np.float64))


def lyric_window_from_words(
    words: Sequence[TimedWord] | TimedLyrics,
    total_length: int,
    offset: int,
    duration: int,
    n_tokens: int,
    vocab: LyricsVocab = VOCAB_V2,
    shift: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The window centred on the character actually sung at the middle of the crop, from word timings.

    midpoint = the number of characters that end at or before offset + duration / 2 (with characters spread
    evenly over the song this is exactly the original's linear midpoint), plus `shift`; then the same clamping
    and padding as `lyric_window`. Indices point into `encode_timed_words(words, vocab)[0].tokens`. `words` may
    be `TimedLyrics` already encoded with `vocab`.

    `shift` (training only) moves the window off its true centre: at sampling and alignment time the window comes
    from the linear rule, which is off by a few seconds of singing, so a prior trained on exactly centred windows
    could learn "the sung character is in the middle" instead of reading the lyrics (`CodeCrops(lyric_jitter=)`).

    Returns:
        window (n_tokens,) int64, indices (n_tokens,) int64 (-1 for padding).
    """
    _check_crop(total_length, offset, duration)
    timed = TimedLyrics.encode(words, vocab)
    midpoint = int(np.count_nonzero(timed.char_ends <= offset + duration / 2.0)) + shift
    return _centred_window(timed.tokens, midpoint, n_tokens)


def sung_keys(
    words: Sequence[TimedWord] | TimedLyrics,
    indices: np.ndarray,
    offset: int,
    hop_length: int,
    n_ctx: int,
    vocab: LyricsVocab = VOCAB_V2,
) -> np.ndarray:
    """For each of the `n_ctx` codes of a window, the lyric key that stands for the character sung at the code's
    middle (samples offset + (t + 0.5) * hop_length), or -1: the target of `prior train --align-loss`.

    The character sung at time p is the first one that ends after p (`encode_timed_words`: a word's characters
    share its span evenly); only a time inside a word (start <= p < end) has one, so pauses and instrumental
    passages have no target. `indices` are the window's characters (`lyric_window_from_words`; `words` may be
    `TimedLyrics` already encoded with `vocab`). Key j of a window stands for its character j - 1 (the lyrics
    encoder reads token j - 1 last, `align.attention`), so the key is the character's slot plus one; -1 where the
    character is not in the window or sits in its last slot.

    Returns:
        (n_ctx,) int64 keys in [1, len(indices)), or -1.
    """
    timed = TimedLyrics.encode(words, vocab)
    char_ends, starts, ends = timed.char_ends, timed.word_starts, timed.word_ends
    times = offset + (np.arange(n_ctx, dtype=np.float64) + 0.5) * hop_length
    chars = np.searchsorted(char_ends, times, side="right")  # characters ended by then: the next one is sung
    word = np.searchsorted(starts, times, side="right") - 1  # the last word started by then
    inside = (word >= 0) & (times < ends[np.maximum(word, 0)]) if len(starts) else np.zeros(n_ctx, dtype=bool)
    slot_of = np.full(len(char_ends) + 1, -1, dtype=np.int64)  # character -> its slot in the window (or -1)
    present = indices >= 0
    slot_of[indices[present]] = np.nonzero(present)[0]
    keys = slot_of[np.minimum(chars, len(char_ends))] + 1
    keys[~inside | (chars >= len(char_ends)) | (keys == 0) | (keys >= len(indices))] = -1
    return keys
