"""The sampling loop on real tiny models with a stand-in window sampler: which windows run, what each one is
conditioned on, and that stopping after any window and continuing from the saved codes gives the same bits."""

from __future__ import annotations

import pytest
import torch

from openjukebox.data.vocab import Vocabulary
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior, prior_preset
from openjukebox.prior.labeller import Labeller
from openjukebox.sample.pipeline import Pipeline, Song, WindowRequest
from openjukebox.sample.settings import LevelSampling
from openjukebox.vqvae import VQVAE
from openjukebox.vqvae.config import PRESETS

SETTINGS = {2: LevelSampling(hop_fraction=0.5), 1: LevelSampling(hop_fraction=0.5), 0: LevelSampling(hop_fraction=0.5)}


class RecordingSampler:
    """Appends tokens drawn from the request's generator; records every request."""

    def __init__(self):
        self.requests: list[WindowRequest] = []

    def __call__(self, r: WindowRequest) -> torch.Tensor:
        self.requests.append(r)
        b, c = r.context.shape
        new = torch.randint(0, r.prior.config.bins, (b, r.length - c), generator=r.generator)
        return torch.cat([r.context, new], dim=1)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    vqvae = VQVAE(PRESETS["tiny"]).eval()
    priors = {level: Prior(prior_preset("tiny", level)).eval() for level in range(3)}
    artists = Vocabulary.build(["alice", "bob"], kind="artist")
    genres = Vocabulary.build(["rock", "jazz"], kind="genre")
    labellers = {level: Labeller(p.config, artists, genres) for level, p in priors.items()}
    return vqvae, priors, labellers


def _pipeline(parts, sampler) -> Pipeline:
    vqvae, priors, labellers = parts
    return Pipeline(vqvae, priors, labellers, sampler)


SONG = Song("alice", "rock", "la la la la " * 20)
LENGTH = 128 * 200  # 200 top tokens: 6 top windows of 64 at hop 32


def test_windows_and_conditioning(parts):
    sampler = RecordingSampler()
    zs = _pipeline(parts, sampler).ancestral_sample(SONG, 2, LENGTH, seed=3, settings=SETTINGS)
    assert [z.shape for z in (zs[0], zs[1], zs[2])] == [(2, 3200), (2, 800), (2, 200)]
    top = [r for r in sampler.requests if r.prior.config.level == 2]
    starts = [0, 32, 64, 96, 128, 136]
    assert [r.context.shape[1] for r in top] == [0, 32, 32, 32, 32, 56]
    for r, start in zip(top, starts):
        assert r.upper is None
        assert r.y[0, 1].item() == start * 128  # offset moves with the window
        assert r.y[0, 0].item() == LENGTH and r.y[0, 2].item() == 64 * 128
    level1 = [r for r in sampler.requests if r.prior.config.level == 1]
    for r, start in zip(level1, range(0, 800, 32)):
        assert torch.equal(r.upper, zs[2][:, start // 4 : start // 4 + 16])  # the aligned codes above
        assert r.y.shape == (2, 5) and r.y[0, 1].item() == start * 32


def test_same_seed_same_codes_and_resume_after_any_window_is_identical(parts):
    full = _pipeline(parts, RecordingSampler()).ancestral_sample(SONG, 2, LENGTH, seed=7, settings=SETTINGS)
    again = _pipeline(parts, RecordingSampler()).ancestral_sample(SONG, 2, LENGTH, seed=7, settings=SETTINGS)
    assert all(torch.equal(full[k], again[k]) for k in full)

    class Killed(Exception):
        pass

    for kill_after in (1, 7, 30):
        saved = {}
        count = [0]

        def on_window(level, window, zs, saved=saved, count=count, kill_after=kill_after):
            count[0] += 1
            saved.update({k: v.clone() for k, v in zs.items()})
            if count[0] == kill_after:
                raise Killed

        with pytest.raises(Killed):
            _pipeline(parts, RecordingSampler()).ancestral_sample(
                SONG, 2, LENGTH, seed=7, settings=SETTINGS, on_window=on_window
            )
        resumed = _pipeline(parts, RecordingSampler()).continue_sample(saved, SONG, LENGTH, seed=7, settings=SETTINGS)
        assert all(torch.equal(full[k], resumed[k]) for k in full), f"killed after window {kill_after}"


def test_upsample_keeps_top_codes_and_rejects_short_ones(parts):
    pipe = _pipeline(parts, RecordingSampler())
    top = torch.randint(0, 2048, (1, 200))
    zs = pipe.upsample({2: top}, SONG, LENGTH, seed=1, settings=SETTINGS)
    assert torch.equal(zs[2], top) and zs[0].shape == (1, 3200)
    with pytest.raises(OpenJukeboxError, match="whole song"):
        pipe.upsample({2: top[:, :100]}, SONG, LENGTH, seed=1)


def test_short_song_is_one_partial_window_per_level(parts):
    sampler = RecordingSampler()
    zs = _pipeline(parts, sampler).ancestral_sample(SONG, 1, 128 * 40, seed=0, settings=SETTINGS)
    assert [z.shape[1] for z in (zs[2], zs[1], zs[0])] == [40, 160, 640]
    assert [r.length for r in sampler.requests if r.prior.config.level == 2] == [40]


def test_primed_sample_keeps_the_prompt_codes(parts):
    vqvae = parts[0]
    prompt = torch.randn(2, 128 * 50) * 0.1
    with torch.no_grad():
        want = vqvae.encode(prompt)
    zs = _pipeline(parts, RecordingSampler()).primed_sample(prompt, SONG, LENGTH, seed=0, settings=SETTINGS)
    for level in range(3):
        assert torch.equal(zs[level][:, : want[level].shape[1]], want[level].long())
    with pytest.raises(OpenJukeboxError, match="shorter than the song"):
        _pipeline(parts, RecordingSampler()).primed_sample(torch.zeros(1, LENGTH), SONG, LENGTH, seed=0)
