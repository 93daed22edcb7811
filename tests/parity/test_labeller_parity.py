"""Parity of our `Labeller` with the original `Labeller` (`get_batch_labels`, `get_relevant_lyric_tokens`) and
`SimplePrior.get_y` (+ `set_y_lyric_tokens`), over the released label sets: v2 with the 512-token lyric window
(5b_lyrics), v3 with 384 tokens (1b_lyrics), v2 without lyrics (5b) and an upsampler (v2, shorter windows).

Songs cover the start, middle and end of a song, lyrics shorter than the window and empty lyrics, non-ASCII and
out-of-vocabulary characters, multi-word genres, non-ASCII and unknown artists; many random crops check the
float64 (first label) and float32 (later windows) midpoint arithmetic. `get_y` is called unbound on a stand-in
holding what it reads (the labeller, sample_length, raw_to_tokens), so no model is built.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from openjukebox.prior import prior_preset
from openjukebox.prior.labeller import Labeller

reference_labels = pytest.importorskip("jukebox_infer.data.labels")
reference_prior = pytest.importorskip("jukebox_infer.prior.prior")

SR = 44100
KINDS = ("5b_lyrics", "1b_lyrics", "5b", "upsampler_level_1")


@pytest.fixture(autouse=True)
def _cpu_long_tensor(monkeypatch):
    # The original asserts `isinstance(x, t.cuda.LongTensor)` in places; on CPU let that check accept CPU tensors.
    monkeypatch.setattr(torch.cuda, "LongTensor", torch.LongTensor, raising=False)


def _long_lyrics(n_chars: int, seed: int) -> str:
    """Verse-like text with accents, emoji, symbols the vocabularies lack ('*', '&', '/', '+' in v3) and '\\'."""
    rng = random.Random(seed)
    words = ["love", "Night", "café", "naïve", "don't", "(oh)", "[x2]", "Ça", "straße", "ёж", "😀", "½", "*", "&", "+"]
    words += ["rock-n-roll", "yeah!", "why?", "a;b", '"quote"', "tab\there", "back\\slash", "12", ":"]
    out = []
    while sum(len(w) + 1 for w in out) < n_chars:
        out.append(rng.choice(words))
        if rng.random() < 0.15:
            out.append("\n")
    return " ".join(out)


def _songs(ids: str) -> list[dict]:
    """Song metas (the original's `metas` layout) for label set `ids`."""
    minute = 60 * SR
    if ids == "v2":
        genres = ["Blues Rock", "pop", "Alternative Country Rap", "hip hop", "unheard-of rock"]
    else:
        genres = ["acid rock", "pop rock", "hip hop", "country", "no such genre"]
    artists = ["Alan Jackson", "Björk", "Céline Dion", "The Beatles", "Nobody At All 123"]
    lyrics = [_long_lyrics(4000, 0), "Short one: é, ü & 😀", "", _long_lyrics(2500, 1), _long_lyrics(600, 2)]
    totals = [4 * minute + 123, 2 * minute, 3 * minute + 7, 9 * minute + 59 * SR, minute]
    offsets = [0, 1_000_003, 17, 4 * minute, 30 * SR]
    return [
        dict(artist=a, genre=g, lyrics=text, total_length=t, offset=o)
        for a, g, text, t, o in zip(artists, genres, lyrics, totals, offsets, strict=True)
    ]


def _pair(kind: str):
    config = prior_preset(kind)
    labels = config.labels
    ref = reference_labels.Labeller(
        labels.max_bow_genre_size, config.n_tokens, config.sample_length, v3=labels.ids == "v3"
    )
    return config, ref, Labeller(config)


def _reference_get_y(config, ref, labels: dict, start: int):
    """The original `SimplePrior.get_y(labels, start, get_indices=True)`."""
    prior = SimpleNamespace(labeller=ref, sample_length=config.sample_length, raw_to_tokens=config.hop_length)
    return reference_prior.SimplePrior.get_y(prior, labels, start, get_indices=True)


@pytest.mark.parametrize("kind", KINDS)
def test_labels_match_original(kind):
    config, ref, ours = _pair(kind)
    metas = _songs(config.labels.ids)
    want = ref.get_batch_labels(metas)
    got = ours.batch(metas)
    assert got.y.dtype == torch.int64 and got.y.shape == (len(metas), config.y_length)
    torch.testing.assert_close(got.y, want["y"], rtol=0, atol=0)
    for i, meta in enumerate(metas):
        # one song at a time through `labels` gives the same row
        torch.testing.assert_close(ours.labels(**meta).y, want["y"][i : i + 1], rtol=0, atol=0)
    if config.n_tokens:
        for i, meta in enumerate(metas):
            assert got.lyrics[i].tokens.tolist() == want["info"][i]["full_tokens"]
            assert got.lyrics[i].text == want["info"][i]["lyrics"]
            _, indices = reference_labels.get_relevant_lyric_tokens(
                want["info"][i]["full_tokens"],
                config.n_tokens,
                meta["total_length"],
                meta["offset"],
                config.sample_length,
            )
            assert got.indices[i].tolist() == indices
    else:
        assert got.indices is None


@pytest.mark.parametrize("kind", KINDS)
def test_windows_match_original_get_y(kind):
    config, ref, ours = _pair(kind)
    metas = _songs(config.labels.ids)
    want = ref.get_batch_labels(metas)
    got = ours.batch(metas)
    shortest = min((m["total_length"] - m["offset"]) // config.hop_length for m in metas)
    last = shortest - config.n_ctx  # the last whole window of the shortest song
    assert last > 0
    for start in (0, 1, config.n_ctx // 2, last // 2, last):
        want_y, want_indices = _reference_get_y(config, ref, want, start)
        window = ours.for_window(got, start)
        torch.testing.assert_close(window.y, want_y, rtol=0, atol=0)
        if config.n_tokens:
            assert window.indices.tolist() == want_indices
        else:
            assert want_indices is None and window.indices is None
    # the base labels are left as they were
    torch.testing.assert_close(got.y, want["y"], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ("5b_lyrics", "1b_lyrics"))
def test_random_crops_match_original(kind):
    # Many crops of songs of many lengths: the window midpoint is computed in float64 for the first label and in
    # float32 for later windows, exactly as the original, so every token and index must agree.
    config, ref, ours = _pair(kind)
    rng = np.random.default_rng(0)
    lyrics = _long_lyrics(3000, 3)
    lo, hi = int(config.labels.min_duration * SR) + 1, int(config.labels.max_duration * SR) - 1
    metas = []
    for _ in range(40):
        total = int(rng.integers(lo, hi))
        metas.append(dict(artist="Joni Mitchell", genre="pop", lyrics=lyrics, total_length=total, offset=0))
    want = ref.get_batch_labels(metas)
    got = ours.batch(metas)
    torch.testing.assert_close(got.y, want["y"], rtol=0, atol=0)
    shortest = min(m["total_length"] for m in metas) // config.hop_length
    for start in rng.integers(0, shortest - 1, size=25).tolist():
        want_y, want_indices = _reference_get_y(config, ref, want, start)
        window = ours.for_window(got, start)
        torch.testing.assert_close(window.y, want_y, rtol=0, atol=0)
        assert window.indices.tolist() == want_indices
    for meta in metas[:10]:
        meta = dict(meta, offset=int(rng.integers(0, meta["total_length"])))
        torch.testing.assert_close(ours.labels(**meta).y, ref.get_batch_labels([meta])["y"], rtol=0, atol=0)


def test_first_label_float64_and_later_windows_float32_as_original():
    # A crop where the original's two midpoint computations disagree by one character: `get_label` (Python
    # floats) centres the window on character 2675, `get_y` (int64 tensors, float32 arithmetic) on 2676.
    config, ref, ours = _pair("5b_lyrics")
    lyrics = ("abc def ghi\n" * 300)[:3001]
    meta = dict(artist="Joni Mitchell", genre="pop", lyrics=lyrics, total_length=20_706_840, offset=17_940_058)
    want = ref.get_batch_labels([meta])
    got = ours.batch([meta])
    want_y, want_indices = _reference_get_y(config, ref, want, 0)
    window = ours.for_window(got, 0)
    torch.testing.assert_close(got.y, want["y"], rtol=0, atol=0)
    torch.testing.assert_close(window.y, want_y, rtol=0, atol=0)
    assert window.indices.tolist() == want_indices
    assert got.indices[0, 0] == 2675 - 256 and window.indices[0, 0] == 2676 - 256
