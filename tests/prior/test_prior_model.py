"""The assembled prior: presets, conditioning shapes, loss weighting, label growth and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import PRESET_NAMES, Prior, PriorConfig, prior_preset


def _y(config: PriorConfig, batch: int = 2) -> torch.Tensor:
    total = config.sample_length * 4 + int(config.sample_rate * (config.labels.min_duration or 0))
    row = [total, config.sample_length, config.sample_length, 1] + [2] + [-1] * (config.labels.max_bow_genre_size - 1)
    row += [5] * config.n_tokens
    return torch.tensor([row] * batch)


def _count_on_meta(config: PriorConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Prior(config).parameters())


@pytest.mark.parametrize(
    ("name", "billions"),
    # The Jukebox paper (Table 6 / section 5): 5B top priors, 1B top prior, 1B upsamplers.
    [("5b", 5.0), ("5b_lyrics", 5.0), ("1b_lyrics", 1.0), ("upsampler_level_1", 1.0), ("upsampler_level_0", 1.0)],
)
def test_official_presets_have_the_published_sizes(name, billions):
    n = _count_on_meta(prior_preset(name))
    assert abs(n / 1e9 - billions) / billions < 0.25, f"{name}: {n / 1e9:.2f} B parameters"


def test_official_preset_shapes():
    c = prior_preset("1b_lyrics")
    assert (c.transformer.n_ctx, c.transformer.prime_len, c.sample_length, c.y_length) == (6528, 384, 786432, 389)
    c = prior_preset("5b_lyrics")
    assert (c.transformer.encoder_dims, c.y_length, c.alignment) == (512, 521, (68, 2))
    assert c.lyrics_encoder_transformer.n_ctx == 512 and c.lyrics_encoder_transformer.blocks == 32
    assert [prior_preset(f"upsampler_level_{i}").sample_length for i in (0, 1)] == [65536, 262144]
    assert prior_preset("upsampler_level_1").cond_downsample == 4


def test_config_round_trips_through_json_dict():
    for name in PRESET_NAMES:
        for level in (0, 1, 2) if name in ("small", "demo", "tiny") else (None,):
            c = prior_preset(name, level)
            assert PriorConfig.from_dict(c.to_dict()) == c


def test_preset_level_mismatch_and_unknown_name():
    with pytest.raises(OpenJukeboxError, match="level-2 model"):
        prior_preset("5b", 1)
    with pytest.raises(OpenJukeboxError, match="unknown prior preset"):
        prior_preset("7b")


@pytest.mark.parametrize("level", [2, 1, 0])
def test_conditioning_shapes(level):
    torch.manual_seed(0)
    config = prior_preset("tiny", level)
    prior = Prior(config)
    b = 3
    upper = torch.randint(0, config.bins, (b, config.n_ctx // 4)) if level < 2 else None
    x_cond, y_cond, lyrics = prior.conditioning(_y(config, b), upper, b)
    assert x_cond.shape == (b, config.n_ctx, config.width)  # timing signal (top) or upsampled codes above
    assert y_cond.shape == (b, 1, config.width)
    assert (lyrics is None) == (level < 2)
    if level == 2:
        assert lyrics.shape == (b, config.n_tokens)
        assert prior.encoder_kv(lyrics).shape == (b, config.n_tokens, config.width)


def test_loss_weights_lyric_and_music_terms():
    torch.manual_seed(0)
    config = prior_preset("tiny", 2)
    out = Prior(config)(torch.randint(0, config.bins, (2, config.n_ctx)), y=_y(config))
    n_tok, n_ctx = config.n_tokens, config.n_ctx
    want = 0.4 * out.lyric_loss * n_tok / (n_tok + n_ctx) + out.music_loss * n_ctx / (n_tok + n_ctx)
    torch.testing.assert_close(out.loss, want)
    assert out.lyric_loss > 0 and out.logits.shape == (2, n_ctx, config.bins)


def test_grow_labels_keeps_existing_rows():
    torch.manual_seed(0)
    prior = Prior(prior_preset("tiny", 2))
    artists = prior.labels.artist_embedding.weight.clone()
    genres = prior.labels.genre_embedding.weight.clone()
    prior.grow_labels(artist_bins=70, genre_bins=64)
    assert prior.labels.artist_embedding.weight.shape == (70, 32)
    assert torch.equal(prior.labels.artist_embedding.weight[:64], artists)
    assert torch.equal(prior.labels.genre_embedding.weight, genres)
    assert prior.labels.artist_embedding.weight[64:].abs().sum() > 0
    assert prior.config.labels.artist_bins == 70
    y = _y(prior.config)
    y[:, 3] = 69  # a new artist id now works
    prior(torch.randint(0, 64, (2, 64)), y=y)
    with pytest.raises(ValueError, match="only grow"):
        prior.grow_labels(artist_bins=10, genre_bins=64)


def test_bad_inputs_raise_clear_errors():
    prior = Prior(prior_preset("tiny", 1))
    codes = torch.randint(0, 64, (2, 64))
    with pytest.raises(ValueError, match="level above"):
        prior(codes, None, _y(prior.config))
    with pytest.raises(ValueError, match="y of shape"):
        prior(codes, torch.randint(0, 64, (2, 16)), None)
    with pytest.raises(ValueError, match="whole windows"):
        prior(codes[:, :32], torch.randint(0, 64, (2, 16)), _y(prior.config))
    assert math.isfinite(prior(codes, torch.randint(0, 64, (2, 16)), _y(prior.config)).loss.item())
