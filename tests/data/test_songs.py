"""Tests for openjukebox.data.songs: labelled crops from a song index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from openjukebox.audio import load_audio
from openjukebox.data.batches import SeededBatches
from openjukebox.data.index import build_index, open_index
from openjukebox.data.lyrics import VOCAB_V2, TimedWord, decode_lyrics, lyric_window_from_words
from openjukebox.data.songs import SongCrops, build_vocabularies

SR = 8000
LENGTH = 4000  # 0.5 s crops
N_TOKENS = 8
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
WORDS = [
    {"word": "hello", "start": 0.5, "end": 1.0},
    {"word": "big", "start": 1.2, "end": 1.5},
    {"word": "wide", "start": 2.0, "end": 2.4},
    {"word": "world", "start": 2.5, "end": 3.5},
]


def _song(root: Path, name: str, seconds: float, seed: int, meta: dict) -> None:
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, (round(seconds * SR), 2)).astype(np.float32)
    sf.write(root / f"{name}.flac", x, SR)
    (root / f"{name}.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    _song(root, "a", 4.0, 1, {"artist": "The Alphas", "genre": "Blues Rock", "lyrics": ALPHABET * 2})
    _song(root, "b", 3.0, 2, {"artist": "Bravo", "genre": ["rock", "pop"], "lyrics": "x", "words": WORDS})
    _song(root, "c", 2.0, 3, {"artist": "The Alphas", "genre": "jazz"})  # no lyrics
    build_index(root, progress=False)
    with open_index(root) as idx:
        yield idx


@pytest.fixture(scope="module")
def crops(index) -> SongCrops:
    artists, genres = build_vocabularies(index)
    return SongCrops(index, SR, LENGTH, artists, genres, n_tokens=N_TOKENS)


def test_vocabularies(index):
    artists, genres = build_vocabularies(index)
    assert artists.names == ("unknown", "The Alphas", "Bravo")
    assert set(genres.names[1:]) == {"blues", "rock", "pop", "jazz"}
    assert genres.names[1] == "rock"  # the most frequent word first


def test_songs_and_labels(crops):
    assert [s.path.name for s in crops.songs] == ["a.flac", "b.flac", "c.flac"]
    assert crops.lengths.tolist() == [4 * SR, 3 * SR, 2 * SR]
    a, b, c = crops.songs
    g = crops.genres
    assert a.artist == c.artist == crops.artists.id("The Alphas") and b.artist == crops.artists.id("Bravo")
    assert a.genre.tolist() == [g.id("blues"), g.id("rock"), -1, -1, -1]
    assert b.genre.tolist() == [g.id("rock"), g.id("pop"), -1, -1, -1]
    assert c.genre.tolist() == [g.id("jazz"), -1, -1, -1, -1]


def test_batch_shapes_timing_and_audio(crops):
    batch = crops.batch(seed=3, index=7, batch_size=12)
    assert batch["audio"].shape == (12, LENGTH) and batch["audio"].dtype == torch.float32
    assert batch["artist"].shape == (12,) and batch["artist"].dtype == torch.int64
    assert batch["genre"].shape == (12, 5) and batch["genre"].dtype == torch.int64
    assert batch["lyrics"].shape == (12, N_TOKENS) and batch["lyrics"].dtype == torch.int64
    assert batch["y"].shape == (12, 4 + 5 + N_TOKENS)
    for i in range(12):
        song = crops.songs[int(batch["song"][i])]
        total, offset = int(batch["total_length"][i]), int(batch["offset"][i])
        assert total == song.length and 0 <= offset <= total - LENGTH
        assert int(batch["artist"][i]) == song.artist
        assert batch["genre"][i].tolist() == song.genre.tolist()
        frac = batch["fraction"][i].tolist()
        assert frac == pytest.approx([offset / total, (offset + LENGTH) / total])
        full = load_audio(song.path, SR)
        np.testing.assert_allclose(batch["audio"][i].numpy(), full[offset : offset + LENGTH], atol=1e-6)
        y = batch["y"][i].tolist()
        assert y[:4] == [total, offset, LENGTH, song.artist]
        assert y[4:9] == song.genre.tolist() and y[9:] == batch["lyrics"][i].tolist()
    assert len(set(batch["song"].tolist())) > 1


def test_linear_lyric_window(crops):
    # 52 characters over 32000 samples; the crop [8000, 12000) has its middle at 10000:
    # midpoint = int(52 * 10000 / 32000) = 16, window = chars [12, 20).
    ex = crops.example_at(0, 8000)
    expected = [VOCAB_V2.token(ch) for ch in (ALPHABET * 2)[12:20]]
    assert ex.lyrics.tolist() == expected
    # clamped at the end of the lyrics
    ex = crops.example_at(0, 4 * SR - LENGTH)
    assert ex.lyrics.tolist() == [VOCAB_V2.token(ch) for ch in ALPHABET[-8:]]
    # no lyrics: all padding
    assert crops.example_at(2, 0).lyrics.tolist() == [0] * N_TOKENS


def test_word_timed_lyric_window(crops):
    timed = [TimedWord(w["word"], w["start"] * SR, w["end"] * SR) for w in WORDS]
    for offset in (0, 6000, 12345, 3 * SR - LENGTH):
        ex = crops.example_at(1, offset)
        expected, _ = lyric_window_from_words(timed, 3 * SR, offset, LENGTH, N_TOKENS)
        assert ex.lyrics.tolist() == expected.tolist()
    # the crop [14000, 18000) is centred at 2.0 s, the start of "wide": the 10 characters "hello big " end
    # by then (the space ends when "wide" starts), so the window is characters [10 - 4, 10 + 4) = "big wide"
    assert decode_lyrics(crops.example_at(1, 14000).lyrics) == "big wide"


def test_determinism(crops):
    a = crops.batch(seed=1, index=5, batch_size=4)
    b = crops.batch(seed=1, index=5, batch_size=4)
    c = crops.batch(seed=1, index=6, batch_size=4)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["offset"], c["offset"])
    loader = DataLoader(SeededBatches(crops, 1, 4, start_index=5, length=2), batch_size=None, num_workers=2)
    first = next(iter(loader))
    for k in a:
        assert torch.equal(first[k], a[k])


def test_no_lyrics_and_short_songs(index):
    artists, genres = build_vocabularies(index)
    crops = SongCrops(index, SR, 3 * SR, artists, genres, max_genres=1)
    assert [s.path.name for s in crops.songs] == ["a.flac", "b.flac"] and len(crops.rejected) == 1
    batch = crops.batch(0, 0, 3)
    assert "lyrics" not in batch and batch["genre"].shape == (3, 1) and batch["y"].shape == (3, 5)
