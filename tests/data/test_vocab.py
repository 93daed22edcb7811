"""Tests for openjukebox.data.vocab: normalisation, building, unknown names, saving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jukebox_infer.data.artist_genre_processor import norm

from openjukebox.data.vocab import Vocabulary, genre_words, normalize_name
from openjukebox.errors import OpenJukeboxError

ARTISTS = ["The Beatles", "the beatles!", "THE  BEATLES", "ABBA", "Abba", "Björk", "unknown", "", "Rare One"]


def test_normalize_name_matches_the_original_on_ascii() -> None:
    for name in ["The Beatles", "AC/DC", "  Guns N' Roses ", "__a--b__", "Alan Jackson", "50 Cent", "P!nk"]:
        assert normalize_name(name) == norm(name)
    assert normalize_name("Björk") == "bjork"  # the original gives "bj_rk": we transliterate first
    assert genre_words("Blues Rock") == ["blues", "rock"]
    assert genre_words("  ") == []


def test_build_orders_by_count_and_buckets_rare_names() -> None:
    vocab = Vocabulary.build(ARTISTS, min_count=2, kind="artist")
    assert vocab.names == ("unknown", "The Beatles", "ABBA")
    assert vocab.counts == (4, 3, 2)  # unknown, "" , Björk and Rare One went to the bucket
    assert len(vocab) == 3
    assert vocab.id("the-beatles") == 1 and vocab.id("abba") == 2
    assert vocab.id("Unknown") == 0 and vocab.id("") == 0
    assert vocab.get("Rare One", 0) == 0 and vocab.get("Rare One") is None
    assert "ABBA" in vocab and "Rare One" not in vocab
    assert vocab.name(1) == "The Beatles"
    assert Vocabulary.build(ARTISTS).names == ("unknown", "The Beatles", "ABBA", "Björk", "Rare One")


def test_unknown_name_suggests_the_closest() -> None:
    vocab = Vocabulary.build(["The Beatles", "The Beach Boys", "The Byrds", "Metallica", "Beatles Tribute"])
    with pytest.raises(OpenJukeboxError, match="unknown name 'Beetles'") as e:
        vocab.id("Beetles")
    assert "'Beatles Tribute'" in str(e.value) or "'The Beatles'" in str(e.value)
    with pytest.raises(OpenJukeboxError, match="none alike; known: ") as e:
        vocab.id("zzzzzz")
    assert all(repr(n) in str(e.value) for n in vocab.names[1:]) and "more" not in str(e.value)
    many = Vocabulary.build([f"Band {i:02d}" for i in range(25)], kind="artist")
    with pytest.raises(OpenJukeboxError, match=r"'Band 09' and 15 more\)$"):
        many.id("qqqqqq")


def test_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build(ARTISTS, kind="artist")
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    path = tmp_path / "artists.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.id("bjork") == vocab.id("Björk")


def test_bad_files(tmp_path: Path) -> None:
    good = Vocabulary.build(["a", "b"]).to_dict()
    path = tmp_path / "v.json"
    for bad in [
        {**good, "extra": 1},
        {**good, "version": 99},
        {**good, "names": ["a", "b", "c"]},
        {**good, "names": ["unknown", "A", "a!"]},
        {**good, "counts": [0, -1, 1]},
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(OpenJukeboxError, match=str(path)):
            Vocabulary.load(path)
    with pytest.raises(OpenJukeboxError, match="missing"):
        Vocabulary.load(tmp_path / "nope.json")
