"""The inference paths of `openjukebox.vqvae.fast` against the plain modules they replace.

Encoding must be bit-identical (same codes as the original code, see tests/parity); decoding within 1e-5.
Tiles are made tiny here so that every tile boundary, zero pad and remainder is exercised.
"""

import pytest
import torch

from openjukebox.vqvae import VQVAE, fast, get_preset
from openjukebox.vqvae.config import VQVAEConfig


def _model(config: VQVAEConfig, seed: int = 0) -> VQVAE:
    torch.manual_seed(seed)
    model = VQVAE(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than the default init, so that every layer matters
            p.mul_(1.5)
        for codebook in model.codebooks:
            codebook.embed.normal_(std=0.3)
    return model


def _check_layers(model: VQVAE, seconds: float, tile: int) -> None:
    """Decoder and codebook search with `tile`; the encoder with its own minimum slice (EXACT_TILE), over
    `seconds` long enough for several slices at level 0."""
    torch.manual_seed(1)
    audio = torch.randn(2, 1, int(seconds * 44100) // 128 * 128) * 0.3
    with torch.no_grad():
        for level in range(model.levels):
            latents = model.encoders[level](audio)
            assert torch.equal(fast.encode_exact(model.encoders[level], audio), latents)
            expected = model.decoders[level](latents)[:, 0]
            got = fast.decode_latents(model.decoders[level], latents.transpose(1, 2), tile=tile)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
            flat = latents.transpose(1, 2).reshape(-1, latents.shape[1])
            embed = model.codebooks[level].embed
            assert torch.equal(fast.nearest_codes(flat, embed, tile=tile), model.codebooks[level]._nearest(flat)[0])


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_layers_match_modules(name):
    _check_layers(_model(get_preset(name)), seconds=2.0, tile=37)


def test_tiles():
    assert list(fast._tiles(10, 3)) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert list(fast._tiles(10, 3, merge_last=True)) == [(0, 3), (3, 6), (6, 10)]
    assert list(fast._tiles(9, 3, merge_last=True)) == [(0, 3), (3, 6), (6, 9)]
    assert list(fast._tiles(2, 3, merge_last=True)) == [(0, 2)]
    assert list(fast._tiles(0, 3)) == []


def test_other_even_stride_and_dilation_cycle():
    # stride 4 (kernel 8, padding 2) exercises the general transposed-conv weight layout
    config = VQVAEConfig(
        downs_t=(1, 2, 1), strides_t=(4, 2, 2), emb_width=8, l_bins=32, width=8, depth=3, dilation_cycle=2
    )
    _check_layers(_model(config), seconds=0.3, tile=50)


@pytest.mark.slow
def test_official_layers_match_modules():
    _check_layers(_model(get_preset("official")), seconds=2.0, tile=fast.TILE)


def test_vqvae_encode_decode_use_fast_path_and_match_plain(monkeypatch):
    model = _model(get_preset("tiny"))
    torch.manual_seed(2)
    audio = torch.randn(2, 44100) * 0.3
    plain = VQVAE(model.config).eval()
    plain.load_state_dict(model.state_dict())
    plain.fast_inference = False
    calls = []
    monkeypatch.setattr(fast, "decode_latents", _spy(fast.decode_latents, calls))
    for kwargs in ({"chunk_seconds": None}, {"chunk_seconds": 0.4, "context_seconds": 0.25}):
        zs, zs_plain = model.encode(audio, **kwargs), plain.encode(audio, **kwargs)
        for level, (z, z_plain) in enumerate(zip(zs, zs_plain, strict=True)):
            assert torch.equal(z, z_plain)
            out, out_plain = model.decode(z, level, **kwargs), plain.decode(z, level, **kwargs)
            torch.testing.assert_close(out, out_plain, atol=1e-5, rtol=0)
    assert calls, "VQVAE.decode should go through fast.decode_latents"


def _spy(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapper


def test_fallback_for_other_dtypes_and_odd_strides():
    config = get_preset("tiny")
    assert fast.supports(config, torch.zeros(1))
    assert not fast.supports(config, torch.zeros(1, dtype=torch.float64))
    assert not fast.supports(VQVAEConfig(strides_t=(3, 2, 2)), torch.zeros(1))
    model = _model(config)
    z = model.encode(torch.randn(1, 1024) * 0.3)[0]
    expected = model.decode(z, 0)
    model.double()  # decode now runs the modules
    torch.testing.assert_close(model.decode(z, 0), expected, atol=1e-5, rtol=0)


def test_training_forward_unchanged_by_fast_flag():
    model = _model(get_preset("tiny"))
    audio = torch.randn(2, 2048) * 0.3
    with torch.no_grad():
        out_fast = model(audio)
        model.fast_inference = False
        out_plain = model(audio)
    for a, b in zip(out_fast.recons, out_plain.recons, strict=True):
        assert torch.equal(a, b)
