"""Tests for openjukebox.data.lyrics: vocabularies, cleaning, hand-computed windows, parity with jukebox-infer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from jukebox_infer.data.labels import get_relevant_lyric_tokens
from jukebox_infer.data.text_processor import TextProcessor

from openjukebox.data.lyrics import (
    VOCAB_V2,
    VOCAB_V3,
    TimedLyrics,
    TimedWord,
    decode_lyrics,
    encode_lyrics,
    encode_timed_words,
    lyric_window,
    lyric_window_from_words,
    sung_keys,
)
from openjukebox.errors import OpenJukeboxError

SONGS = [
    "I met a traveller from an antique land,\nWho said—“Two vast and trunkless legs of stone\nStand in the desert…",
    "Björk & Beyoncé: naïve café (remix) [live] 1+1=2 ½ 😀 *yeah*\tok\\next line",
    "東京 Москва Ελλάδα «quotes» ‘single’ — en–dash ¿qué? ¡sí!",
    "",
    "ALL CAPS, digits 0123456789; and 'apostrophes' \"quotes\" + plus - minus",
]


def test_vocabulary_sizes_and_ids() -> None:
    assert (VOCAB_V2.n_vocab, VOCAB_V3.n_vocab) == (80, 79)
    assert [VOCAB_V2.token(c) for c in "Aaz0.-+ \n"] == [1, 27, 52, 53, 63, 69, 70, 77, 79]
    assert [VOCAB_V3.token(c) for c in "Aaz0.-' \n"] == [1, 27, 52, 53, 63, 69, 70, 76, 78]
    assert "+" not in VOCAB_V3.chars


def test_cleaning_and_dropped_characters() -> None:
    encoded = encode_lyrics("Hello* wörld & ½ 😀\\x +1", VOCAB_V3)
    assert encoded.chars == "Hello world   12 \nx 1"  # ½ -> ' 1/2' -> ' 12'; backslash -> newline
    assert encoded.dropped == ["*", "&", "½", "😀", "+"]  # '+' only in v3
    assert encoded.tokens.dtype == np.int64
    assert decode_lyrics(encoded.tokens, VOCAB_V3) == encoded.chars
    v2 = encode_lyrics("1+1 “ok”")
    assert (v2.chars, v2.dropped) == ('1+1 "ok"', [])
    assert decode_lyrics([0, 0, *v2.tokens]) == v2.chars  # padding decodes to ''


@pytest.mark.parametrize("v3", [False, True])
def test_encode_parity_with_original(v3: bool) -> None:
    original = TextProcessor(v3=v3)
    vocab = VOCAB_V3 if v3 else VOCAB_V2
    assert vocab.n_vocab == original.n_vocab
    for song in SONGS:
        cleaned = original.clean(song)
        ours = encode_lyrics(song, vocab)
        assert ours.chars == cleaned
        assert ours.tokens.tolist() == original.tokenise(cleaned)


# (n_tokens, offset, duration) -> expected indices, for 20 characters over a song of 100 samples.
@pytest.mark.parametrize(
    ("n_tokens", "offset", "duration", "expected"),
    [
        (4, 0, 10, [0, 1, 2, 3]),  # midpoint int(20 * 5 / 100) = 1, clamped up to 2: song start
        (4, 33, 10, [5, 6, 7, 8]),  # int(20 * 38 / 100) = int(7.6) = 7
        (4, 50, 20, [10, 11, 12, 13]),  # int(20 * 60 / 100) = 12
        (4, 90, 20, [16, 17, 18, 19]),  # int(20 * 100 / 100) = 20, clamped down to 18: song end
        (6, 99, 1, [14, 15, 16, 17, 18, 19]),
        (20, 40, 10, list(range(20))),  # window exactly the lyrics
    ],
)
def test_hand_computed_windows(n_tokens: int, offset: int, duration: int, expected: list[int]) -> None:
    tokens = np.arange(30, 50)
    window, indices = lyric_window(tokens, 100, offset, duration, n_tokens)
    assert indices.tolist() == expected
    assert window.tolist() == [30 + i for i in expected]


def test_short_lyrics_are_left_padded() -> None:
    window, indices = lyric_window([5, 6, 7], 100, 10, 20, 6)
    assert window.tolist() == [0, 0, 0, 5, 6, 7]
    assert indices.tolist() == [-1, -1, -1, 0, 1, 2]
    window, indices = lyric_window([], 100, 0, 20, 4)
    assert window.tolist() == [0] * 4 and indices.tolist() == [-1] * 4


def test_window_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="even"):
        lyric_window(np.arange(10), 100, 0, 10, 3)
    with pytest.raises(ValueError, match="outside"):
        lyric_window(np.arange(10), 100, 100, 10, 4)


def test_window_parity_with_original() -> None:
    processor = TextProcessor(v3=False)
    rng = np.random.default_rng(0)
    full = processor.tokenise(processor.clean(" ".join(SONGS) * 8))
    for _ in range(300):
        n = int(rng.integers(0, len(full) + 1))
        n_tokens = int(rng.choice([8, 384, 512]))
        total = int(rng.integers(44100 * 20, 44100 * 300))
        offset = int(rng.integers(0, total))
        duration = int(rng.choice([1048576, 786432, 262144]))
        tokens, indices = get_relevant_lyric_tokens(full[:n], n_tokens, total, offset, duration)
        window, ours = lyric_window(np.array(full[:n]), total, offset, duration, n_tokens)
        assert (window.tolist(), ours.tolist()) == (tokens, indices)


def test_float32_window_parity_with_original_sampler() -> None:
    # During sampling the original passes 0-dim int64 tensors (set_y_lyric_tokens), so its arithmetic is
    # float32; these crops are ones where that moves the midpoint by one character.
    rng = np.random.default_rng(1)
    full = list(range(1, 80)) * 60
    differ = 0
    for _ in range(3000):
        n = int(rng.integers(600, len(full)))
        total = int(rng.integers(44100 * 30, 44100 * 600))
        offset = int(rng.integers(0, total))
        duration = 1048576
        y = torch.tensor([total, offset, duration])
        tokens, indices = get_relevant_lyric_tokens(full[:n], 512, y[0], y[1], y[2])
        window, ours = lyric_window(full[:n], total, offset, duration, 512, float32=True)
        assert (window.tolist(), ours.tolist()) == (tokens, indices)
        differ += lyric_window(full[:n], total, offset, duration, 512)[1].tolist() != indices
    assert differ < 10


def uniform_words() -> list[TimedWord]:
    # "ab cd ef": 8 characters over 800 samples, character k ending at 100 * (k + 1) as the linear rule assumes.
    return [TimedWord("ab", 0, 200), TimedWord("cd", 300, 500), TimedWord("ef", 600, 800)]


def test_words_spread_evenly_match_the_linear_rule() -> None:
    tokens = encode_lyrics("ab cd ef").tokens
    encoded, char_ends = encode_timed_words(uniform_words())
    assert encoded.chars == "ab cd ef"
    assert char_ends.tolist() == [100, 200, 300, 400, 500, 600, 700, 800]
    for n_tokens in (2, 4, 8, 10):
        for offset in range(0, 800, 7):
            for duration in (0, 50, 150, 400):
                expected = lyric_window(tokens, 800, offset, duration, n_tokens)
                got = lyric_window_from_words(uniform_words(), 800, offset, duration, n_tokens)
                assert [a.tolist() for a in got] == [a.tolist() for a in expected]


def test_words_place_characters_inside_their_spans() -> None:
    words = [TimedWord("la", 0, 10), TimedWord("hello\n", 900, 1000), TimedWord("x", 1000, 1000)]
    encoded, char_ends = encode_timed_words(words)
    assert encoded.chars == "la hello\nx"  # no space after a word ending in whitespace
    # 6 characters of "hello\n" share [900, 1000]; the space ends when "hello" starts; "x" takes no time.
    assert char_ends == pytest.approx(
        [5, 10, 900, 900 + 100 / 6, 900 + 200 / 6, 950, *(900 + 100 * k / 6 for k in (4, 5, 6)), 1000]
    )
    _, indices = lyric_window_from_words(words, 1000, 900, 100, 2)
    # centre 950: 'l', 'a', ' ', 'h', 'e' and the first 'l' (ends at exactly 950) have ended -> midpoint 6
    assert indices.tolist() == [5, 6]
    assert lyric_window(encoded.tokens, 1000, 900, 100, 2)[1].tolist() == [8, 9]  # the linear rule: int(10*.95)
    with pytest.raises(OpenJukeboxError, match="before the word"):
        encode_timed_words([TimedWord("a", 10, 20), TimedWord("b", 5, 30)])
    with pytest.raises(OpenJukeboxError, match="after end"):
        encode_timed_words([TimedWord("a", 10, 5)])


def test_words_window_shift_moves_the_centre_and_stays_clamped() -> None:
    words = uniform_words()  # 8 characters, character k ends at 100 * (k + 1)
    _, centred = lyric_window_from_words(words, 800, 300, 200, 4)  # centre 400: 4 characters ended
    assert centred.tolist() == [2, 3, 4, 5]
    assert lyric_window_from_words(words, 800, 300, 200, 4, shift=1)[1].tolist() == [3, 4, 5, 6]
    assert lyric_window_from_words(words, 800, 300, 200, 4, shift=-2)[1].tolist() == [0, 1, 2, 3]
    assert lyric_window_from_words(words, 800, 300, 200, 4, shift=-9)[1].tolist() == [0, 1, 2, 3]  # clamped
    assert lyric_window_from_words(words, 800, 300, 200, 4, shift=9)[1].tolist() == [4, 5, 6, 7]


def test_sung_keys_point_at_the_character_being_sung_inside_words() -> None:
    words = [TimedWord("ab", 100, 300), TimedWord("cd", 500, 700)]
    # "ab cd": a ends 200, b 300, the space 500 (when "cd" starts), c 600, d 700
    assert encode_timed_words(words)[1].tolist() == [200, 300, 500, 600, 700]
    # codes of 100 samples, read at their middles 50, 150, ..., 750
    whole = np.array([-1, 0, 1, 2, 3, 4])  # the window holds every character (left-padded): slot k + 1
    # 150 -> 'a' (slot 1, key 2); 250 -> 'b'; 350 and 450 are between the words; 550 -> 'c' (key 5);
    # 650 -> 'd' sits in the last slot, whose key does not exist; 50 and 750 are outside the words
    assert sung_keys(words, whole, 0, 100, 8).tolist() == [-1, 2, 3, -1, -1, 5, -1, -1]
    part = np.array([0, 1, 2, 3])  # 'd' is not in this window, 'c' in its last slot
    assert sung_keys(words, part, 0, 100, 8).tolist() == [-1, 1, 2, -1, -1, -1, -1, -1]
    assert sung_keys(words, whole, 200, 100, 4).tolist() == [3, -1, -1, 5]  # a window starting later
    assert sung_keys([], np.array([-1, -1]), 0, 100, 3).tolist() == [-1, -1, -1]


def test_words_encoded_once_give_the_same_windows_and_keys() -> None:
    words = [TimedWord("la", 0, 10), TimedWord("hello\n", 900, 1000), TimedWord("x", 1000, 1000)]
    for vocab in (VOCAB_V2, VOCAB_V3):
        timed = TimedLyrics.encode(words, vocab)
        assert TimedLyrics.encode(timed, vocab) is timed
        assert timed.tokens.tolist() == encode_timed_words(words, vocab)[0].tokens.tolist()
        assert timed.word_starts.tolist() == [0, 900, 1000] and timed.word_ends.tolist() == [10, 1000, 1000]
        for offset, shift in ((0, 0), (400, 2), (900, -3)):
            a = lyric_window_from_words(words, 1000, offset, 100, 4, vocab, shift)
            b = lyric_window_from_words(timed, 1000, offset, 100, 4, vocab, shift)
            assert [x.tolist() for x in a] == [x.tolist() for x in b]
            keys = sung_keys(words, a[1], offset, 10, 10, vocab)
            assert keys.tolist() == sung_keys(timed, a[1], offset, 10, 10).tolist()  # the encoding's vocabulary
