"""Parity of our Transformer with the original's (jukebox-infer carries the original code and key layout).

Both are built at a small size, the original gets random weights, its state dict is converted through our key
map, and the teacher-forced outputs must agree in fp32.
"""

from __future__ import annotations

import pytest
import torch

from openjukebox.transformer import Transformer, TransformerConfig, attn_func_for_layer, convert_transformer_state_dict

reference = pytest.importorskip("jukebox_infer.transformer.transformer")

WIDTH, HEADS, N_CTX, BLOCKS = 64, 2, 64, 8
ENCODER_DIMS, PRIME_LEN = 24, 20

CASES = {
    # attn_order: (depth covering every kind of the schedule, extra kwargs)
    0: (2, {}),
    2: (3, {}),
    10: (19, {"encoder_dims": ENCODER_DIMS}),  # first cross-attention layer is 18
    12: (48, {"prime_len": PRIME_LEN}),  # prime layers 15, 31, dense layer 47
}


def _build_pair(attn_order: int):
    depth, extra = CASES[attn_order]
    torch.manual_seed(attn_order)
    ref = reference.Transformer(
        n_in=WIDTH, n_ctx=N_CTX, n_head=HEADS, n_depth=depth, mask=True, attn_order=attn_order, blocks=BLOCKS, **extra
    )
    with torch.no_grad():  # random everything, LayerNorm affine included, so no parameter hides behind its init
        for p in ref.parameters():
            p.copy_(0.1 * torch.randn_like(p) + (1.0 if p.dim() == 1 and p.shape[0] == WIDTH else 0.0))
    ours = Transformer(TransformerConfig(WIDTH, depth, HEADS, N_CTX, attn_order, blocks=BLOCKS, **extra))
    ours.load_state_dict(convert_transformer_state_dict(ref.state_dict()), strict=True)
    return ref, ours, extra


@pytest.mark.parametrize("attn_order", sorted(CASES))
def test_layer_schedule_matches_original(attn_order):
    ref, ours, _ = _build_pair(attn_order)
    assert ours.attn_funcs == [m.attn_func for m in ref._attn_mods]
    expected_kinds = {0: {0}, 2: {1, 2, 3}, 10: {1, 2, 3, 6}, 12: {0, 1, 2, 3, 7}}[attn_order]
    assert set(ours.attn_funcs) == expected_kinds


@pytest.mark.parametrize("attn_order", sorted(CASES))
def test_forward_matches_original(attn_order):
    ref, ours, extra = _build_pair(attn_order)
    ref.train()
    ours.train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, N_CTX, WIDTH, generator=g)
    enc = torch.randn(2, ENCODER_DIMS, WIDTH, generator=g) if "encoder_dims" in extra else None
    with torch.no_grad():
        want = ref(x, encoder_kv=enc, sample=False, fp16=False, fp16_out=False)
        got = ours(x, encoder_kv=enc)
    assert got.shape == want.shape == (2, N_CTX, WIDTH)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_schedules_of_released_models():
    kinds_5b_lyrics = [attn_func_for_layer(10, d) for d in range(79)]
    assert [d for d, k in enumerate(kinds_5b_lyrics) if k == 6] == [18, 28, 38, 48, 58, 68, 78]
    kinds_1b = [attn_func_for_layer(12, d) for d in range(72)]
    assert [d for d, k in enumerate(kinds_1b) if k == 7] == [15, 31, 63]
    assert [d for d, k in enumerate(kinds_1b) if k == 0] == [47]
    assert [attn_func_for_layer(2, d) for d in range(6)] == [1, 2, 3, 1, 2, 3]


def test_gradients_match_original():
    ref, ours, _ = _build_pair(12)
    x = torch.randn(1, N_CTX, WIDTH)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref(x_ref, sample=False).square().mean().backward()
    ours(x_ours).square().mean().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    want = convert_transformer_state_dict({k: p.grad for k, p in ref.named_parameters()})
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, want[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_key_map_handles_prefixes_and_transposes():
    w = torch.randn(4, 12)  # Conv1D (n_in, n_out)
    state = {
        "module.prior.transformer._attn_mods.3.attn.c_attn.w": w,
        "prior.transformer._attn_mods.3.ln_1.weight": torch.ones(4),
        "prior.x_emb.weight": torch.zeros(2, 4),  # not a transformer key: dropped
    }
    out = convert_transformer_state_dict(state)
    assert set(out) == {"prior.transformer.layers.3.attn.in_proj.weight", "prior.transformer.layers.3.mlp_norm.weight"}
    assert torch.equal(out["prior.transformer.layers.3.attn.in_proj.weight"], w.t())


def test_bfloat16_forward_close_to_fp32():
    _, ours, _ = _build_pair(10)
    x = torch.randn(1, N_CTX, WIDTH)
    enc = torch.randn(1, ENCODER_DIMS, WIDTH)
    with torch.no_grad():
        want = ours(x, enc)
        got = ours.to(torch.bfloat16)(x.bfloat16(), enc.bfloat16())
    assert got.dtype == torch.bfloat16
    rel = (got.float() - want).norm() / want.norm()
    assert rel < 0.05, f"relative error {rel:.3g}"
