"""Whole-song alignment on tiny priors: windows, stitching, times in seconds (with a stand-in attention of known
answer), the real teacher-forced attention's plumbing, head selection and bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from prior_weights import randomised

import openjukebox.align.aligner as aligner
from openjukebox.align.aligner import (
    AlignmentExample,
    align_codes,
    choose_alignment_head,
    head_score,
    song_windows,
    with_alignment,
)
from openjukebox.align.attention import window_attention
from openjukebox.align.stitch import shifted_key_chars
from openjukebox.data.vocab import Vocabulary
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior, prior_preset
from openjukebox.prior.config import LyricsConfig, PriorConfig
from openjukebox.prior.labeller import Labeller

LYRICS = "one two three\nfour five six\nseven eight nine ten\n"
FRAMES = 200  # top-level codes: 18 windows of 64 at the default hop of 8


def labeller_for(config: PriorConfig) -> Labeller:
    artists = Vocabulary.build(["alice", "bob"], kind="artist")
    genres = Vocabulary.build(["rock", "jazz"], kind="genre")
    return Labeller(config, artists, genres)


def merged_config() -> PriorConfig:
    return replace(
        prior_preset("tiny", 2),
        depth=16,
        attn_order=12,
        merged_decoder=False,
        lyrics=LyricsConfig(mode="merged", n_tokens=16, n_vocab=80, alignment_layer=15, alignment_head=0),
    )


@pytest.fixture(scope="module")
def tiny():
    prior = randomised(Prior(prior_preset("tiny", 2)))
    return prior, labeller_for(prior.config)


def codes(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (1, frames), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("merged", [False, True])
def test_real_attention_plumbing(merged, tiny):
    prior, labeller = tiny
    if merged:
        prior = randomised(Prior(merged_config()), seed=2)
        labeller = labeller_for(prior.config)
    layer, head = prior.config.alignment
    al = align_codes(prior, labeller, codes(FRAMES), "alice", "rock", LYRICS)
    text = LYRICS
    n = len(text)
    assert al.text == text and len(al.chars) == n and al.lines == text.split("\n")
    assert al.matrix.shape == (FRAMES, n) and al.path.shape == (FRAMES,)
    assert np.all(np.diff(al.path) >= 0)
    frame_seconds = prior.config.hop_length / prior.config.sample_rate
    assert al.frame_seconds == pytest.approx(frame_seconds) and al.duration == pytest.approx(FRAMES * frame_seconds)
    assert [w.word for w in al.words] == text.split()
    for w in al.words:
        assert 0 <= w.start <= w.end <= al.duration and 0 <= w.confidence <= 1
    assert all(0 <= c.confidence <= 1 for c in al.chars)
    assert (al.source, al.layer, al.head) == ("forced", layer, head)
    # The first window's rows hold its own attention on the characters its keys stand for (earlier windows win).
    base = aligner.song_labels(prior, labeller, "alice", "rock", LYRICS, FRAMES * prior.config.hop_length)
    first = labeller.for_window(base, 0)
    w0 = window_attention(prior, codes(FRAMES)[:, :64], first.y, layer=layer, head=head)[0].numpy()
    keys = shifted_key_chars(first.indices[0].numpy())
    valid = keys >= 0
    np.testing.assert_allclose(al.matrix[:64][:, keys[valid]], w0[:, valid], atol=1e-6)


def test_song_shorter_than_a_window_is_padded(tiny):
    prior, labeller = tiny
    al = align_codes(prior, labeller, codes(40), "bob", "jazz", "la la la")
    assert al.matrix.shape == (40, 8) and al.path.shape == (40,)
    assert song_windows(40, 64, 0.125) == [0]
    assert song_windows(80, 64, 0.125) == [0, 8, 16]


def diagonal_attention(labeller, base, n_chars, frames, head_of_interest=0, heads=2):
    """A stand-in for `window_attentions`: head `head_of_interest` attends, at frame t, to the key standing for
    character t * n_chars // frames (if its window has it); other heads attend uniformly."""

    def fake(prior, x, y, upper=None, layers=None):
        hop = prior.config.hop_length
        b, n_ctx = x.shape
        n_tokens = prior.config.n_tokens
        out = torch.full((b, heads, n_ctx, n_tokens), 1.0 / n_tokens)
        for i in range(b):
            start = int(y[i, 1]) // hop
            keys = shifted_key_chars(labeller.for_window(base, start).indices[0].numpy())
            for r in range(n_ctx):
                target = (start + r) * n_chars // frames
                hit = np.nonzero(keys == target)[0]
                if len(hit):
                    out[i, head_of_interest, r] = 0.0
                    out[i, head_of_interest, r, hit[0]] = 1.0
        return {layer: out for layer in layers}

    return fake


def test_known_answer_times(tiny, monkeypatch):
    prior, labeller = tiny
    frames = 400
    total = frames * prior.config.hop_length
    base = aligner.song_labels(prior, labeller, "alice", "rock", LYRICS, total)
    n = len(LYRICS)
    monkeypatch.setattr(aligner, "window_attentions", diagonal_attention(labeller, base, n, frames))
    al = align_codes(prior, labeller, codes(frames), "alice", "rock", LYRICS, layer=9, head=0)
    fs = al.frame_seconds
    for c in al.chars[:-1]:  # character c is sung from frame ceil(c * frames / n)
        assert c.time == pytest.approx(np.ceil(c.index * frames / n) * fs, abs=1.01 * fs), c
        assert c.confidence == pytest.approx(1.0)
    w = al.words[4]
    assert w.word == "five" and w.line == 1
    assert w.start == pytest.approx(np.ceil(w.first_char * frames / n) * fs, abs=1.01 * fs)
    assert w.end == pytest.approx(np.ceil((w.last_char + 1) * frames / n) * fs, abs=1.01 * fs)
    # The lyrics' last character has no key in any window (key j stands for token j - 1): it is placed between
    # the end of the one before it and the end of the song.
    last = al.chars[-1]
    assert last.time == pytest.approx((np.ceil((n - 1) * frames / n) + frames) / 2 * fs, abs=1.01 * fs)
    assert al.issues == []


def test_choose_alignment_head(tiny, monkeypatch):
    prior, labeller = tiny
    frames = 300
    total = frames * prior.config.hop_length
    base = aligner.song_labels(prior, labeller, "alice", "rock", LYRICS, total)
    example = AlignmentExample(codes(frames), "alice", "rock", LYRICS)
    real = choose_alignment_head(prior, labeller, [example])  # the real (random) attention: plumbing only
    assert real[:2] in {(9, 0), (9, 1)} and 0 <= real[2] <= 1
    monkeypatch.setattr(
        aligner, "window_attentions", diagonal_attention(labeller, base, len(LYRICS), frames, head_of_interest=1)
    )
    layer, head, score = choose_alignment_head(prior, labeller, [example, example])
    assert (layer, head) == (9, 1) and score > 0.5  # a window sings fewer characters than it sees
    config = with_alignment(prior.config, layer, head)
    assert config.alignment == (9, 1)
    assert PriorConfig.from_dict(config.to_dict()).alignment == (9, 1)
    with pytest.raises(OpenJukeboxError, match="outside"):
        with_alignment(prior.config, 10, 0)


def test_head_score_ranks_diagonal_over_sink_and_uniform():
    frames, n = 100, 20
    diag = np.zeros((frames, n), dtype=np.float32)
    diag[np.arange(frames), np.arange(frames) * n // frames] = 1
    sink = np.zeros((frames, n), dtype=np.float32)
    sink[:, 0] = 1
    uniform = np.full((frames, n), 1 / n, dtype=np.float32)
    assert head_score(diag) == pytest.approx(1.0)
    assert head_score(sink) == pytest.approx(1 / n)
    assert head_score(uniform) <= 5 / n + 1e-6
    assert head_score(np.zeros((frames, n))) == 0.0


def test_bad_input(tiny):
    prior, labeller = tiny
    z = codes(80)
    with pytest.raises(OpenJukeboxError, match="lyrics are empty"):
        align_codes(prior, labeller, z, "alice", "rock", "  \n")
    with pytest.raises(OpenJukeboxError, match="no character in the model's lyric vocabulary"):
        align_codes(prior, labeller, z, "alice", "rock", "\u2603\u2603 \U0001f600")
    with pytest.raises(OpenJukeboxError, match="both the alignment layer and head"):
        align_codes(prior, labeller, z, "alice", "rock", LYRICS, layer=9)
    with pytest.raises(OpenJukeboxError, match="not a lyrics layer"):
        align_codes(prior, labeller, z, "alice", "rock", LYRICS, layer=3, head=0)
    plain = Prior(prior_preset("tiny", 1)).eval()
    with pytest.raises(OpenJukeboxError, match="no lyrics conditioning"):
        align_codes(plain, labeller, z, "alice", "rock", LYRICS)
    unset = Prior(replace(prior.config, lyrics=replace(prior.config.lyrics, alignment_layer=None))).eval()
    with pytest.raises(OpenJukeboxError, match="names no alignment layer"):
        align_codes(unset, labeller, z, "alice", "rock", LYRICS)


def test_batched_windows_give_the_same_alignment(tiny):
    prior, labeller = tiny
    one = align_codes(prior, labeller, codes(FRAMES), "alice", "rock", LYRICS)
    three = align_codes(prior, labeller, codes(FRAMES), "alice", "rock", LYRICS, batch_size=3)
    np.testing.assert_allclose(three.matrix, one.matrix, atol=1e-5)
