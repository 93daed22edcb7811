"""Labeller: names to label vectors, with our vocabularies and with (tiny stand-ins for) the official id tables.

Parity with the original lives in tests/parity/test_labeller_parity.py; here: the y layout, unknown names,
genre words, lyric-window indices (plain text and timed words), moving to another window, the checks on
inputs, and a label vector that a prior accepts.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from openjukebox.checkpoints.prior import save_prior
from openjukebox.data.lyrics import VOCAB_V2, VOCAB_V3, TimedWord, decode_lyrics
from openjukebox.data.vocab import Vocabulary
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior, prior_preset
from openjukebox.prior.labeller import Labeller, Labels, SongLyrics, SongMeta, lyrics_vocab_for

SR = 44100


@pytest.fixture
def vocabularies() -> tuple[Vocabulary, Vocabulary]:
    artists = Vocabulary.build(["Ada Lovelace", "Ada Lovelace", "Björk", "The Band"], kind="artist")
    genres = Vocabulary.build(["blues", "rock", "rock", "pop", "jazz"], kind="genre")
    return artists, genres


@pytest.fixture
def tiny(vocabularies) -> Labeller:
    return Labeller(prior_preset("tiny"), *vocabularies)


def _write_ids(folder, version: str) -> None:
    if version == "v2":
        artists = "unknown;0\nvarious;0\n;0\nalan_jackson;1\nbj_rk;2\n"
        genres = "unknown;0\nblues;1\nrock;2\npop;3\nhip;4\nhop;5\n"
    else:
        artists = "alan jackson;1\nbjörk;2\nunknown;0\n"
        genres = "acid rock;1\npop;2\nunknown;0\n"
    (folder / f"{version}_artist_ids.txt").write_text(artists, encoding="utf-8")
    (folder / f"{version}_genre_ids.txt").write_text(genres, encoding="utf-8")


def test_y_layout_with_our_vocabularies(tiny, vocabularies):
    artists, genres = vocabularies
    config = tiny.config
    total = 30 * SR
    labels = tiny.labels("Björk", "Rock", "Hello world", total, offset=1000)
    assert labels.y.dtype == torch.int64 and labels.y.shape == (1, config.y_length) == (1, 4 + 1 + 16)
    head = labels.y[0, :5].tolist()
    assert head == [total, 1000, config.sample_length, artists.id("bjork"), genres.id("rock")]
    # 11 characters, left-padded to the 16-token window
    assert labels.y[0, 5:].tolist() == [0] * 5 + [VOCAB_V2.token(c) for c in "Hello world"]
    assert labels.indices.tolist() == [[-1] * 5 + list(range(11))]
    assert labels.lyrics[0].text == "Hello world" and labels.lyrics[0].words is None


def test_unknown_names_with_our_vocabularies(vocabularies, caplog):
    strict = Labeller(prior_preset("tiny"), *vocabularies)
    with pytest.raises(OpenJukeboxError, match=r"unknown artist 'Ada Lovelac' \(closest known: 'Ada Lovelace'"):
        strict.labels("Ada Lovelac", "rock", "", 30 * SR)
    with pytest.raises(OpenJukeboxError, match="unknown genre 'polka'"):
        strict.labels("Ada Lovelace", "polka", "", 30 * SR)
    lenient = Labeller(prior_preset("tiny"), *vocabularies, unknown_ok=True)
    with caplog.at_level(logging.WARNING, logger="openjukebox.prior.labeller"):
        y = lenient.labels("Nobody", "polka", "", 30 * SR).y
    assert y[0, 3:5].tolist() == [0, 0]
    assert "unknown artist 'Nobody'" in caplog.text and "unknown genre 'polka'" in caplog.text


def test_our_genre_words_fill_the_slots(vocabularies, caplog):
    artists, genres = vocabularies
    config = prior_preset("tiny")
    three = replace(config, labels=replace(config.labels, max_bow_genre_size=3))
    labeller = Labeller(three, artists, genres)
    assert labeller.genre_ids("Blues-Rock") == [genres.id("blues"), genres.id("rock"), -1]
    assert labeller.genre_ids("") == [0, -1, -1]  # no genre: the unknown bucket, as in training
    with caplog.at_level(logging.WARNING, logger="openjukebox.prior.labeller"):
        ids = labeller.genre_ids("blues rock pop jazz")
        assert labeller.genre_ids("blues rock pop jazz") == ids
    assert ids == [genres.id(w) for w in ("blues", "rock", "pop")]  # cut to the slots, as SongCrops does
    assert caplog.text.count("has 4 words") == 1  # once per labeller, not for every window and sample


def test_official_tables(tmp_path, caplog):
    _write_ids(tmp_path, "v2")
    _write_ids(tmp_path, "v3")
    v2 = Labeller(prior_preset("5b_lyrics"), ids_folder=tmp_path)
    assert v2.artist_id("Alan Jackson") == 1 and v2.artist_id("Björk") == 2  # 'bj_rk', as the original
    assert v2.genre_ids("Hip Hop") == [4, 5, -1, -1, -1]  # bag of words
    with caplog.at_level(logging.WARNING, logger="openjukebox.prior.labeller"):
        assert v2.artist_id("Alan Jakson") == 0  # warning and id 0, as the original
    assert "unknown artist 'Alan Jakson'" in caplog.text and "'alan_jackson'" in caplog.text
    with pytest.raises(OpenJukeboxError, match="has 6 words; this prior takes at most 5"):
        v2.genre_ids("blues rock pop hip hop blues")

    v3 = Labeller(prior_preset("1b_lyrics"), ids_folder=tmp_path)
    assert v3.artist_id("Björk") == 2 and v3.genre_ids("Acid Rock") == [1]  # one genre, lowercased
    assert v3.lyrics_vocab is VOCAB_V3 and v2.lyrics_vocab is VOCAB_V2
    y = v3.labels("Björk", "pop", "a-b+c", 60 * SR).y
    assert y[0, -5:].tolist() == [0] + [VOCAB_V3.token(c) for c in "a-bc"]  # '+' is not in the v3 table
    assert VOCAB_V3.token("(") == VOCAB_V2.token("(") - 1  # v3 ids after '-' are one lower

    no_lyrics = Labeller(prior_preset("5b"), ids_folder=tmp_path).labels("Alan Jackson", "pop", "ignored", 90 * SR)
    assert no_lyrics.indices is None and no_lyrics.y.shape == (1, 9)


def test_window_indices_point_at_the_characters(tiny):
    text = "".join(chr(ord("a") + i % 26) for i in range(300))
    total = 100 * SR
    for offset in (0, 30 * SR, total - 1):
        labels = tiny.labels("Ada Lovelace", "rock", text, total, offset)
        indices = labels.indices[0].numpy()
        assert (indices >= 0).all() and (np.diff(indices) == 1).all()
        assert decode_lyrics(labels.y[0, -16:]) == "".join(text[i] for i in indices)
    assert tiny.labels("Ada Lovelace", "rock", text, total, 0).indices[0, 0] == 0  # clamped to the start
    assert tiny.labels("Ada Lovelace", "rock", text, total, total - 1).indices[0, -1] == 299  # and the end


def test_timed_words_centre_the_window_on_the_sung_character(tiny):
    # Ten 4-letter words, one per second from t = 50 s: the window follows the words, not an even spread.
    words = [TimedWord(f"w{i:02d}x", (50 + i) * SR, (50 + i + 0.8) * SR) for i in range(10)]
    total = 100 * SR
    sample_length = tiny.sample_length
    offset = 55 * SR - sample_length // 2  # mid-crop at 55 s: the start of word 5 ('w05x' spans 55..55.8 s)
    labels = tiny.labels("Ada Lovelace", "rock", words, total, offset)
    text = labels.lyrics[0].text
    assert text == " ".join(w.text for w in words) and labels.lyrics[0].words == tuple(words)
    indices = labels.indices[0].tolist()
    assert indices[8] == text.index("w05x")  # 8 characters before, 8 from the character sung at mid-crop
    assert decode_lyrics(labels.y[0, -16:]) == text[indices[0] : indices[-1] + 1]
    # an even spread would centre the window on character 55/100 * 49 = 26 instead
    plain = tiny.labels("Ada Lovelace", "rock", text, total, offset)
    assert plain.indices[0, 8] == 26 != indices[8]
    # for_window recomputes from the words too: 1 s later is one word later
    later = tiny.for_window(labels, SR // tiny.hop_length + 1)
    assert later.indices[0, 8] == text.index("w06x")
    # the words are encoded once per song (kept in `timed`); lyrics built without it give the same window
    song = labels.lyrics[0]
    assert song.timed is not None and np.array_equal(song.timed.tokens, song.tokens)
    by_hand = Labels(labels.y, labels.indices, (SongLyrics(song.tokens, song.text, song.words),))
    assert torch.equal(tiny.for_window(by_hand, SR // tiny.hop_length + 1).y, later.y)


def test_for_window_moves_the_offset_and_keeps_the_base(tiny):
    text = "The quick brown fox jumps over the lazy dog. " * 10
    base = tiny.batch(
        [
            SongMeta("Ada Lovelace", "rock", text, 120 * SR, 0),
            {"artist": "The Band", "genre": "pop", "lyrics": "", "total_length": 60 * SR, "offset": 5 * SR},
        ]
    )
    before = base.y.clone()
    hop = tiny.hop_length
    window = tiny.for_window(base, 1000)
    assert window.y[:, 1].tolist() == [1000 * hop, 5 * SR + 1000 * hop]
    assert window.y[:, [0, 2, 3, 4]].tolist() == base.y[:, [0, 2, 3, 4]].tolist()
    assert torch.equal(base.y, before)  # the base is not modified
    assert window.indices[1].tolist() == [-1] * 16 and window.y[1, -16:].tolist() == [0] * 16
    assert window.indices[0].tolist() != base.indices[0].tolist()
    again = tiny.labels("Ada Lovelace", "rock", text, 120 * SR, 1000 * hop)
    assert torch.equal(window.y[0], again.y[0]) and torch.equal(window.indices[0], again.indices[0])
    with pytest.raises(ValueError, match="window start must be >= 0"):
        tiny.for_window(base, -1)
    with pytest.raises(ValueError, match="offset"):
        tiny.for_window(base, 60 * SR // hop)  # past the end of the second song


def test_input_checks(vocabularies, tmp_path):
    artists, genres = vocabularies
    config = prior_preset("tiny")
    labeller = Labeller(config, artists, genres)
    with pytest.raises(OpenJukeboxError, match=r"offset 100 lies outside the song \[0, 100\)"):
        labeller.labels("The Band", "rock", "", 100, 100)
    with pytest.raises(OpenJukeboxError, match=r"song length 601.00 s is outside this prior's range"):
        labeller.labels("The Band", "rock", "", 601 * SR)
    with pytest.raises(OpenJukeboxError, match=r"vocabularies .* are needed"):
        Labeller(config)
    with pytest.raises(OpenJukeboxError, match="vocabularies must not be given"):
        Labeller(prior_preset("5b"), artists, genres, ids_folder=tmp_path)
    with pytest.raises(OpenJukeboxError, match="do not fit the prior's label tables"):
        Labeller(replace(config, labels=replace(config.labels, artist_bins=2)), artists, genres)
    with pytest.raises(OpenJukeboxError, match="no label conditioning"):
        Labeller(replace(config, labels=None, lyrics=None))
    with pytest.raises(OpenJukeboxError, match="no lyric character table with 81 tokens"):
        lyrics_vocab_for(81)
    # the upsamplers need no song-length range: they have no timing signal
    upsampler = Labeller(prior_preset("tiny", level=0), artists, genres)
    y = upsampler.labels("The Band", "rock", "la la", 10, 3).y
    assert y.tolist() == [[10, 3, upsampler.sample_length, artists.id("The Band"), genres.id("rock")]]


def test_labels_feed_a_prior_and_load_from_its_checkpoint(vocabularies, tmp_path, caplog):
    torch.manual_seed(0)
    model = Prior(prior_preset("tiny")).eval()
    folder = save_prior(tmp_path / "prior", model, *vocabularies)
    labeller = Labeller.from_checkpoint(folder)
    with caplog.at_level(logging.WARNING, logger="openjukebox.prior.labeller"):
        labels = labeller.labels("Björk", "Blues", "Il était une fois * 😀", 40 * SR, 0)
    assert "'*' '😀'" in caplog.text  # left-out characters are reported
    window = labeller.for_window(labels, 64)
    config = model.config
    codes = torch.randint(0, config.bins, (1, config.n_ctx))
    with torch.no_grad():
        out = model(codes, y=window.y)
    assert torch.isfinite(out.loss) and out.logits.shape == (1, config.n_ctx, config.bins)
