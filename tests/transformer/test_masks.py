"""Each attention kind sees exactly the positions it should: perturb one input position at a time and check
which outputs move."""

from __future__ import annotations

import pytest
import torch

from openjukebox.transformer import FactoredAttention, TransformerConfig, prime_keys_len

WIDTH, HEADS, N_CTX, BLOCKS, PRIME_LEN = 16, 2, 32, 4, 9
BC = N_CTX // BLOCKS  # 8


def expected_sources(kind: int, pos: int) -> set[int]:
    """Input positions that output `pos` depends on."""
    row = pos // BC
    if kind == 0:
        return set(range(pos + 1))
    if kind == 1:
        return set(range(row * BC, pos + 1))
    if kind == 2:
        return set(range(pos % BC, pos + 1, BC))
    if kind == 3:  # row 0 attends to zeros only, so its output is constant
        return set() if row == 0 else set(range((row - 1) * BC, row * BC)) | {pos}
    if kind == 7:
        return set(range(min(pos + 1, prime_keys_len(PRIME_LEN, BLOCKS)))) | {pos}
    raise AssertionError(kind)


def _layer(kind: int, **extra) -> FactoredAttention:
    torch.manual_seed(kind)
    config = TransformerConfig(WIDTH, 1, HEADS, N_CTX, m_attn=1.0, blocks=BLOCKS, prime_len=PRIME_LEN, **extra)
    layer = FactoredAttention(config, kind).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.2 * torch.randn_like(p))  # small enough that no softmax saturates
    return layer


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 7])
def test_self_attention_sees_only_its_positions(kind):
    layer = _layer(kind)
    x = torch.randn(1, N_CTX, WIDTH, dtype=torch.float64)
    with torch.no_grad():
        base = layer(x)[0]  # (T, width)
        moved = torch.zeros(N_CTX, N_CTX, dtype=torch.bool)  # moved[j, i]: perturbing input j changes output i
        for j in range(N_CTX):
            xp = x.clone()
            xp[0, j] += torch.randn(WIDTH, dtype=torch.float64)
            diff = (layer(xp)[0] - base).abs().amax(dim=-1)  # (T,)
            assert ((diff < 1e-12) | (diff > 1e-8)).all(), "ambiguous change size"
            moved[j] = diff > 1e-8
    for i in range(N_CTX):
        got = set(moved[:, i].nonzero().flatten().tolist())
        assert got == expected_sources(kind, i), f"kind {kind} output {i}"


def test_prime_keys_len_quirk():
    assert prime_keys_len(384, 64) == 448  # 1b_lyrics: multiplies by blocks, not block_ctx
    assert prime_keys_len(PRIME_LEN, BLOCKS) == 12


def test_encoder_decoder_sees_all_encoder_positions_and_only_its_own_query():
    layer = _layer(6, encoder_dims=5)
    x = torch.randn(1, N_CTX, WIDTH, dtype=torch.float64)
    enc = torch.randn(1, 5, WIDTH, dtype=torch.float64)
    with torch.no_grad():
        base = layer(x, enc)[0]
        for j in range(N_CTX):
            xp = x.clone()
            xp[0, j] += 1.0
            diff = (layer(xp, enc)[0] - base).abs().amax(dim=-1)
            assert set((diff > 1e-6).nonzero().flatten().tolist()) == {j}
        for s in range(5):
            ep = enc.clone()
            ep[0, s] += 1.0
            diff = (layer(x, ep)[0] - base).abs().amax(dim=-1)
            assert (diff > 1e-6).all(), f"encoder position {s} must reach every query"


def test_bad_inputs_raise():
    with pytest.raises(AssertionError):
        _layer(6, encoder_dims=5)(torch.randn(1, N_CTX, WIDTH, dtype=torch.float64))
    with pytest.raises(AssertionError):
        FactoredAttention(TransformerConfig(WIDTH, 1, HEADS, N_CTX, blocks=BLOCKS), 4)  # summary: not implemented
