"""Shapes, hop lengths and chunked processing of the VQ-VAE presets."""

import pytest
import torch

from openjukebox.vqvae import VQVAE, get_preset
from openjukebox.vqvae.config import PRESETS, VQVAEConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_hops_and_shapes(name):
    config = get_preset(name)
    assert config.hop_lengths == (8, 32, 128)
    model = VQVAE(config).eval()
    for codebook in model.codebooks:  # random codes so that encode works without training
        codebook.embed.normal_()
    audio = torch.randn(2, 128 * 12) * 0.1
    zs = model.encode(audio)
    assert [tuple(z.shape) for z in zs] == [(2, 192), (2, 48), (2, 12)]
    assert all(z.dtype == torch.long and int(z.max()) < config.l_bins for z in zs)
    for level, z in enumerate(zs):
        assert model.decode(z, level).shape == (2, 128 * 12)


def test_official_parameter_count():
    # The released VQ-VAE has 1.49 M parameters besides its codebooks (jukebox-infer reports the same).
    model = VQVAE(get_preset("official"))
    assert sum(p.numel() for p in model.parameters()) == 1_485_763
    assert model.codebooks[0].embed.shape == (2048, 64)
    assert [len(e.blocks) for e in model.encoders] == [1, 2, 3]
    # level 0 uses width and depth x2 (multipliers (2, 1, 1)); decoder dilations run large -> small
    res0 = model.decoders[0].blocks[0].ups[0].res.blocks
    assert [b.conv1.dilation[0] for b in res0] == [3**i for i in range(8)][::-1]
    assert res0[0].conv1.in_channels == 64


def test_encode_pads_to_top_hop():
    model = VQVAE(get_preset("tiny")).eval()
    zs = model.encode(torch.randn(1, 1000))
    assert [z.shape[1] for z in zs] == [128, 32, 8]  # 1000 -> 1024 samples


def test_chunked_matches_one_shot():
    torch.manual_seed(0)
    model = VQVAE(get_preset("tiny")).eval()
    for codebook in model.codebooks:
        codebook.embed.normal_(std=0.1)
    audio = torch.randn(1, 44100 * 3) * 0.1
    one_shot = model.encode(audio, chunk_seconds=None)
    chunked = model.encode(audio, chunk_seconds=0.5, context_seconds=0.25)
    for a, b in zip(one_shot, chunked, strict=True):
        assert torch.equal(a, b)
    for level in range(3):
        full = model.decode(one_shot[level], level, chunk_seconds=None)
        parts = model.decode(one_shot[level], level, chunk_seconds=0.5, context_seconds=0.25)
        torch.testing.assert_close(full, parts, atol=1e-5, rtol=0)


def test_config_round_trip_and_unknown_key():
    config = get_preset("small")
    assert VQVAEConfig.from_dict(config.to_dict()) == config
    from openjukebox.errors import OpenJukeboxError

    with pytest.raises(OpenJukeboxError, match="unknown key"):
        VQVAEConfig.from_dict({**config.to_dict(), "widht": 3})
