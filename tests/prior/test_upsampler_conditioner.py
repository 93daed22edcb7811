"""Upsampler conditioner: shapes, and parity with the original Jukebox `Conditioner` via the key map."""

from __future__ import annotations

import pytest
import torch

from openjukebox.prior.upsampler import UpsamplerConditioner, convert_upsampler_conditioner_state_dict

SMALL = dict(
    input_bins=64,
    width=32,
    down_t=2,
    stride_t=2,
    cond_width=16,
    cond_depth=4,
    cond_m_conv=1.0,
    cond_dilation_growth_rate=3,
    cond_dilation_cycle=2,
)
L = 12


def _original(res_scale: bool, checkpoint_res: bool = False):
    from jukebox_infer.prior.conditioners import Conditioner

    torch.manual_seed(0)
    model = Conditioner(
        input_shape=(L,),
        bins=SMALL["input_bins"],
        down_t=SMALL["down_t"],
        stride_t=SMALL["stride_t"],
        out_width=SMALL["width"],
        init_scale=1.0,
        zero_out=False,
        res_scale=res_scale,
        width=SMALL["cond_width"],
        depth=SMALL["cond_depth"],
        m_conv=SMALL["cond_m_conv"],
        dilation_growth_rate=SMALL["cond_dilation_growth_rate"],
        dilation_cycle=SMALL["cond_dilation_cycle"],
        reverse_decoder_dilation=False,
        checkpoint_res=checkpoint_res,
    )
    with torch.no_grad():
        for p in model.parameters():  # randomise everything, LayerNorm affine included
            p.normal_(0.0, 0.2)
    return model.eval()


def _prefixed(model) -> dict[str, torch.Tensor]:
    # As in a released prior checkpoint, next to unrelated keys that the converter must skip.
    sd = {f"conditioner_blocks.0.{k}": v for k, v in model.state_dict().items()}
    sd["prior.x_emb.weight"] = torch.zeros(3, 3)
    return sd


def _ours(sd: dict[str, torch.Tensor], res_scale: bool) -> UpsamplerConditioner:
    ours = UpsamplerConditioner(**SMALL, cond_res_scale=res_scale).eval()
    ours.load_state_dict(convert_upsampler_conditioner_state_dict(sd), strict=True)
    return ours


@pytest.mark.parametrize("res_scale", [False, True])
def test_parity_with_original_conditioner(res_scale: bool) -> None:
    orig = _original(res_scale)
    ours = _ours(_prefixed(orig), res_scale)
    z = torch.randint(0, SMALL["input_bins"], (2, L))
    with torch.no_grad():
        expected = orig(z)
        got = ours(z)
    assert got.shape == (2, L * 4, SMALL["width"])
    assert expected.shape == got.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_res_scale_changes_output() -> None:
    orig = _original(False)
    sd = _prefixed(orig)
    z = torch.randint(0, SMALL["input_bins"], (1, L))
    with torch.no_grad():
        a = _ours(sd, False)(z)
        b = _ours(sd, True)(z)
    assert not torch.allclose(a, b)


def test_checkpoint_res_blocks_naming() -> None:
    orig = _original(True)
    sd = _prefixed(orig)
    assert any(".0.model.0.model.1." in k for k in sd)
    blocks_sd = {k.replace(".0.model.", ".0.blocks."): v for k, v in sd.items()}
    assert any(".cond.model.1.0.blocks.0.model.1.weight" in k for k in blocks_sd)
    assert convert_upsampler_conditioner_state_dict(blocks_sd).keys() == (
        convert_upsampler_conditioner_state_dict(sd).keys()
    )
    ours = _ours(blocks_sd, True)
    z = torch.randint(0, SMALL["input_bins"], (2, L))
    with torch.no_grad():
        torch.testing.assert_close(ours(z), orig(z), atol=1e-5, rtol=1e-5)


def test_original_built_with_checkpoint_res_converts() -> None:
    orig = _original(True, checkpoint_res=True)
    sd = _prefixed(orig)
    assert any(".0.blocks." in k for k in sd)
    ours = _ours(sd, True)
    z = torch.randint(0, SMALL["input_bins"], (2, L))
    with torch.no_grad():
        torch.testing.assert_close(ours(z), orig(z), atol=1e-5, rtol=1e-5)


def test_key_names() -> None:
    orig = _original(False)
    conv = convert_upsampler_conditioner_state_dict(_prefixed(orig))
    assert torch.equal(conv["x_emb.weight"], orig.x_emb.weight)
    assert torch.equal(conv["proj.weight"], orig.cond.model[0].weight)
    assert torch.equal(conv["ups.1.conv.bias"], orig.cond.model[2][1].bias)
    assert torch.equal(conv["ups.0.res.blocks.3.conv2.weight"], orig.cond.model[1][0].model[3].model[3].weight)
    assert torch.equal(conv["ln.bias"], orig.ln.bias)


def test_unknown_key_rejected() -> None:
    with pytest.raises(KeyError):
        convert_upsampler_conditioner_state_dict({"conditioner_blocks.0.cond.model.1.2.weight": torch.zeros(1)})
    with pytest.raises(KeyError):
        convert_upsampler_conditioner_state_dict({"prior.x_emb.weight": torch.zeros(1)})


def test_dilations_not_reversed_and_embedding_init() -> None:
    ours = UpsamplerConditioner(**SMALL, init_scale=0.5)
    dil = [b.conv1.dilation[0] for b in ours.ups[0].res.blocks]
    assert dil == [1, 3, 1, 3]
    assert abs(ours.x_emb.weight.std().item() - 0.01) < 0.003
