"""Checks of the reference-side harness itself (tiny config, CPU, a few seconds)."""

import jukebox_infer  # noqa: F401  (the oracle is a dev dependency: a missing one must fail, not skip)
import numpy as np
import pytest
import torch
from reference_vqvae import (
    TINY_ASYM_HP,
    TINY_HP,
    build_reference_vqvae,
    reference_decode,
    reference_encode,
    reference_loss,
    reference_state_dict,
    save_original_checkpoint,
)

SR = 44100
T = 2 * SR  # 2 s; not a multiple of 128, on purpose


@pytest.fixture(scope="module")
def tiny():
    return build_reference_vqvae(TINY_HP, seed=0)


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(0).uniform(-0.5, 0.5, size=(2, T)).astype(np.float32)


@pytest.fixture(scope="module")
def codes(tiny, noise):
    return reference_encode(tiny, noise)


def test_encode_lengths_and_range(codes):
    assert [z.shape for z in codes] == [(2, T // 8), (2, T // 32), (2, T // 128)]
    for z in codes:
        assert z.dtype == np.int64
        assert z.min() >= 0 and z.max() < TINY_HP["l_bins"]
    # The seeded codebooks are fitted to the encoder outputs, so noise uses many codes per level.
    assert [len(np.unique(z)) for z in codes][:2] == [64, 64]
    assert len(np.unique(codes[2])) >= 16


@pytest.mark.parametrize("level", [0, 1, 2])
def test_decode_shapes(tiny, codes, level):
    hop = (8, 32, 128)[level]
    x = reference_decode(tiny, codes, level)
    assert x.shape == (2, codes[level].shape[1] * hop)
    assert x.dtype == np.float32
    assert np.isfinite(x).all() and x.std() > 0
    # Passing just that level's codes is the same call.
    np.testing.assert_array_equal(reference_decode(tiny, codes[level], level), x)


def test_state_dict_layout(tiny):
    sd = reference_state_dict(tiny)
    # A level block with down_t steps has 1 + down_t * (1 + 2 * depth) convs (encoder and decoder alike);
    # encoders use downs_t[:L+1], so 16 + 27 + 38 = 81 convs each side, + 3 decoder `out` convs = 165
    # convs x (weight, bias) + 3 codebooks = 333.
    assert len(sd) == 333
    for key, shape in {
        "encoders.0.level_blocks.0.model.0.0.weight": (16, 1, 4),
        "encoders.0.level_blocks.0.model.0.1.model.0.model.1.weight": (16, 16, 3),
        "encoders.0.level_blocks.0.model.0.1.model.1.model.3.weight": (16, 16, 1),
        "encoders.0.level_blocks.0.model.3.weight": (16, 16, 3),
        "encoders.2.level_blocks.2.model.0.0.weight": (16, 16, 4),
        "decoders.0.level_blocks.0.model.0.weight": (16, 16, 3),
        "decoders.0.level_blocks.0.model.3.1.weight": (16, 16, 4),
        "decoders.2.level_blocks.2.model.2.1.weight": (16, 16, 4),
        "decoders.2.out.weight": (1, 16, 3),
        "bottleneck.level_blocks.2.k": (64, 16),
    }.items():
        assert tuple(sd[key].shape) == shape, key
    assert [k for k in sd if "bottleneck" in k] == [f"bottleneck.level_blocks.{i}.k" for i in range(3)]
    assert list(sd) == list(tiny.state_dict())


def test_seeded_and_checkpoint_roundtrip(tiny, tmp_path):
    again = reference_state_dict(build_reference_vqvae(TINY_HP, seed=0))
    other = reference_state_dict(build_reference_vqvae(TINY_HP, seed=1))
    sd = reference_state_dict(tiny)
    assert all(torch.equal(sd[k], again[k]) for k in sd)
    assert not torch.equal(sd["decoders.2.out.weight"], other["decoders.2.out.weight"])

    path = tmp_path / "vqvae.pth.tar"
    save_original_checkpoint(tiny, path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain types only, like the release
    assert set(ckpt) == {"hps", "model", "opt", "step"}
    assert ckpt["step"] == 0 and ckpt["opt"] is None
    assert ckpt["hps"]["l_bins"] == 64 and tuple(ckpt["hps"]["downs_t"]) == (3, 2, 2)
    assert list(ckpt["model"]) == list(sd)
    assert all(torch.equal(ckpt["model"][k], sd[k]) for k in sd)


def test_asym_preset_shapes():
    model = build_reference_vqvae(TINY_ASYM_HP, seed=0)
    sd = reference_state_dict(model)
    # level 0: multiplier 2 -> width 16, depth 4 (dilations 1, 3, 9, 27); levels 1, 2: width 8, depth 2
    assert tuple(sd["encoders.0.level_blocks.0.model.0.0.weight"].shape) == (16, 1, 4)
    assert tuple(sd["encoders.0.level_blocks.0.model.0.1.model.3.model.1.weight"].shape) == (16, 16, 3)
    assert tuple(sd["encoders.1.level_blocks.0.model.0.0.weight"].shape) == (8, 1, 4)
    assert tuple(sd["encoders.1.level_blocks.1.model.0.0.weight"].shape) == (8, 16, 4)
    assert tuple(sd["encoders.1.level_blocks.1.model.2.weight"].shape) == (16, 8, 3)
    assert tuple(sd["decoders.2.level_blocks.0.model.0.weight"].shape) == (8, 16, 3)
    assert tuple(sd["decoders.2.level_blocks.0.model.3.1.weight"].shape) == (8, 16, 4)  # ConvT (in, out, k)
    assert tuple(sd["decoders.2.out.weight"].shape) == (1, 16, 3)
    enc = model.encoders[0].level_blocks[0].model[0][1].model
    dec = model.decoders[0].level_blocks[0].model[1][0].model
    assert [b.model[1].dilation[0] for b in enc] == [1, 3, 9, 27]
    assert [b.model[1].dilation[0] for b in dec] == [27, 9, 3, 1]  # reversed in decoders only
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, size=(1, 4096)).astype(np.float32)
    zs = reference_encode(model, audio)
    assert [z.shape[1] for z in zs] == [512, 128, 32]
    assert reference_decode(model, zs, 1).shape == (1, 4096)


def test_reference_loss_runs(tiny, noise):
    loss, metrics = reference_loss(tiny, noise[:, :16384], dict(l1=0.25, l2=0.08, spec=20.0))
    assert np.isfinite(loss) and loss > 0
    parts = (
        metrics["recons_loss"]
        + 0.0 * metrics["spectral_loss"]
        + 1.0 * metrics["multispectral_loss"]
        + 0.02 * metrics["commit_loss"]
    )
    assert loss == pytest.approx(parts, rel=1e-5)
    assert {"recons_loss_l1", "recons_loss_l3", "spectral_convergence", "linf_loss"} <= set(metrics)
