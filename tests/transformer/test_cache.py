"""Incremental decoding with the key/value cache equals the teacher-forced forward, for every attention kind.

Each kind is run token by token, in one call, in equal chunks that straddle rows, and in an irregular schedule
(a prefill of any length followed by single tokens, as sampling does); every position's output must match the
teacher-forced output. The caches are preallocated once at the sizes the kinds need and never reallocated.
"""

from __future__ import annotations

import pytest
import torch

from openjukebox.transformer.attention import (
    BLOCK,
    DENSE,
    ENC_DEC,
    PREV_BLOCK,
    PRIME,
    TRANSPOSE_BLOCK,
    FactoredAttention,
    prime_keys_len,
)
from openjukebox.transformer.block import ResAttnBlock, Transformer, layer_token_step
from openjukebox.transformer.config import TransformerConfig

WIDTH, HEADS, N_CTX, BLOCKS, ENCODER_DIMS, PRIME_LEN = 32, 2, 48, 6, 10, 13  # block_ctx 8, prime keys 18
CONFIG = TransformerConfig(
    WIDTH, 1, HEADS, N_CTX, attn_order=0, blocks=BLOCKS, encoder_dims=ENCODER_DIMS, prime_len=PRIME_LEN
)
KINDS = (DENSE, BLOCK, TRANSPOSE_BLOCK, PREV_BLOCK, ENC_DEC, PRIME)
SCHEDULES = {
    "token_by_token": [1] * N_CTX,
    "one_call": [N_CTX],
    "chunks_of_5": [5] * 9 + [3],
    "whole_rows": [8] * 6,
    "prefill_then_tokens": [13] + [1] * 35,
    "irregular": [2, 9, 1, 17, 1, 1, 17],
}


def _randomise_(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * noise if name.endswith("norm.weight") else 0.2 * noise)


def _decode(module, x: torch.Tensor, cache, schedule: list[int]) -> torch.Tensor:
    """Run x (B, T, width) through `module` with `cache`, `schedule[i]` positions per call."""
    assert sum(schedule) == x.shape[1]
    outs, start = [], 0
    for n in schedule:
        outs.append(module(x[:, start : start + n], cache=cache))
        start += n
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("kind", KINDS)
def test_cached_attention_equals_teacher_forced(kind, schedule):
    attn = FactoredAttention(CONFIG, kind)
    _randomise_(attn, kind)
    g = torch.Generator().manual_seed(100 + kind)
    x = torch.randn(2, N_CTX, WIDTH, generator=g)
    enc = torch.randn(2, ENCODER_DIMS, WIDTH, generator=g) if kind == ENC_DEC else None
    with torch.no_grad():
        want = attn(x, enc)
        cache = attn.new_cache(2, enc)
        got = _decode(attn, x, cache, SCHEDULES[schedule])
    assert cache.length == N_CTX
    assert want.abs().max() > 0.1  # the comparison is not between near-zero outputs
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "kind, slots",
    [
        (DENSE, N_CTX),
        (BLOCK, N_CTX // BLOCKS),  # the current row only
        (TRANSPOSE_BLOCK, N_CTX),
        (PREV_BLOCK, 2 * N_CTX // BLOCKS),  # the previous and the current row
        (ENC_DEC, ENCODER_DIMS),
        (PRIME, prime_keys_len(PRIME_LEN, BLOCKS)),  # the key prefix only
    ],
)
def test_cache_is_preallocated_at_the_size_each_kind_needs(kind, slots):
    attn = FactoredAttention(CONFIG, kind)
    _randomise_(attn, 0)
    enc = torch.randn(3, ENCODER_DIMS, WIDTH) if kind == ENC_DEC else None
    cache = attn.new_cache(3, enc)
    assert cache.key.shape == cache.value.shape == (3, slots, WIDTH // 4)
    pointers = (cache.key.data_ptr(), cache.value.data_ptr())
    with torch.no_grad():
        _decode(attn, torch.randn(3, N_CTX, WIDTH), cache, SCHEDULES["irregular"])
    assert (cache.key.data_ptr(), cache.value.data_ptr()) == pointers  # written in place, never regrown


def test_cross_attention_keys_are_computed_once_from_encoder_kv():
    attn = FactoredAttention(CONFIG, ENC_DEC)
    _randomise_(attn, 1)
    enc = torch.randn(2, ENCODER_DIMS, WIDTH)
    cache = attn.new_cache(2, enc)
    k, v = attn.enc_kv(enc).chunk(2, dim=-1)
    k = k * attn.qk_scale  # keys are cached pre-scaled
    torch.testing.assert_close(cache.key, k)
    torch.testing.assert_close(cache.value, v)
    with torch.no_grad():
        _decode(attn, torch.randn(2, 5, WIDTH), cache, [2, 1, 2])
    torch.testing.assert_close(cache.key, k)  # decoding does not touch them


def test_decoding_past_the_context_is_refused():
    attn = FactoredAttention(CONFIG, DENSE)
    cache = attn.new_cache(1)
    with torch.no_grad():
        attn(torch.randn(1, N_CTX - 1, WIDTH), cache=cache)
        with pytest.raises(AssertionError, match="exceed n_ctx"):
            attn(torch.randn(1, 2, WIDTH), cache=cache)


@pytest.mark.parametrize(
    "attn_order, depth, extra",
    [
        (12, 48, {"prime_len": PRIME_LEN}),  # row, column, previous row, prime and dense layers (1b_lyrics)
        (10, 19, {"encoder_dims": ENCODER_DIMS}),  # row, column, previous row and cross-attention (5b_lyrics)
    ],
)
def test_cached_transformer_equals_teacher_forced(attn_order, depth, extra):
    config = TransformerConfig(WIDTH, depth, HEADS, N_CTX, attn_order, blocks=BLOCKS, **extra)
    model = Transformer(config)
    _randomise_(model, attn_order)
    with torch.no_grad():  # keep activations in range through the deep stack
        for layer in model.layers:
            layer.attn.proj.weight.mul_(0.25)
            layer.mlp.proj.weight.mul_(0.25)
    g = torch.Generator().manual_seed(attn_order)
    x = torch.randn(2, N_CTX, WIDTH, generator=g)
    enc = torch.randn(2, ENCODER_DIMS, WIDTH, generator=g) if "encoder_dims" in extra else None
    with torch.no_grad():
        want = model(x, encoder_kv=enc)
        for schedule in ([1] * N_CTX, [21] + [1] * 27, [7] * 6 + [6]):
            cache = model.new_cache(2, enc)
            got = _decode(model, x, cache, schedule)
            assert cache.length == N_CTX
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_cache_for_a_shorter_decode_holds_only_its_positions(kind):
    length = 21  # not a whole number of rows (block_ctx 8)
    attn = FactoredAttention(CONFIG, kind)
    _randomise_(attn, 10 + kind)
    g = torch.Generator().manual_seed(200 + kind)
    x = torch.randn(2, N_CTX, WIDTH, generator=g)
    enc = torch.randn(2, ENCODER_DIMS, WIDTH, generator=g) if kind == ENC_DEC else None
    with torch.no_grad():
        want = attn(x, enc)[:, :length]  # every kind is causal: the first positions do not see later ones
        cache = attn.new_cache(2, enc, length=length)
        full_slots = attn.cache_slots()
        slots = {DENSE: length, TRANSPOSE_BLOCK: 24}.get(kind, full_slots)  # the column layout keeps whole rows
        assert cache.key.shape == (2, slots, WIDTH // 4)
        got = _decode(attn, x[:, :length], cache, [5, 1, 1, 9, 1, 4])
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        with pytest.raises(AssertionError, match="exceed the cache length 21"):
            attn(x[:, length : length + 1], cache=cache)


def test_decode_layout_changes_strides_only():
    config = TransformerConfig(WIDTH, 3, HEADS, N_CTX, attn_order=2, blocks=BLOCKS)
    model = Transformer(config)
    _randomise_(model, 5)
    x = torch.randn(2, N_CTX, WIDTH)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        want = model(x)
        model.use_decode_layout_()
        linears = [
            m for layer in model.layers for m in (layer.attn.in_proj, layer.attn.proj, layer.mlp.fc, layer.mlp.proj)
        ]
        for linear in linears:
            assert linear.weight.stride() == (
                1,
                linear.weight.shape[0],
            )  # (in, out) in memory, as the original's Conv1D
        pointers = [linear.weight.data_ptr() for linear in linears]
        model.use_decode_layout_()  # already done: nothing is copied again
        assert [linear.weight.data_ptr() for linear in linears] == pointers
        after = model.state_dict()
        assert after.keys() == before.keys()
        assert all(torch.equal(after[k], before[k]) for k in before)
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=0)
        cache = model.new_cache(2)
        torch.testing.assert_close(_decode(model, x, cache, [9] + [1] * 39), want, atol=1e-4, rtol=0)


def test_half_precision_stack_decodes_token_by_token():
    # bf16 LayerNorms take the upcasting path (not the fp32 fast path of `layer_token_step`).
    config = TransformerConfig(WIDTH, 3, HEADS, N_CTX, attn_order=2, blocks=BLOCKS)
    model = Transformer(config)
    _randomise_(model, 6)
    model = model.to(torch.bfloat16)
    x = torch.randn(2, N_CTX, WIDTH).to(torch.bfloat16)
    with torch.no_grad():
        want = model(x).float()
        got = _decode(model, x, model.new_cache(2), [1] * N_CTX).float()
    assert got.dtype == want.dtype and want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_fast_token_step_equals_the_generic_one_bit_for_bit(kind):
    # `layer_token_step` (addmm into the attention's buffer, prepared views, in-place temporaries) against
    # `ResAttnBlock.token_step` (F.linear, F.layer_norm, `token_attend`): the same arithmetic, so equal bits, over
    # a prefill and then single tokens across every row, in the decoding weight layout.
    layer = ResAttnBlock(CONFIG, kind)
    _randomise_(layer, 7)
    layer.attn.in_proj.weight.data = layer.attn.in_proj.weight.data.t().contiguous().t()  # as use_decode_layout_
    x = torch.randn(3, N_CTX, WIDTH, generator=torch.Generator().manual_seed(8))
    enc = torch.randn(3, ENCODER_DIMS, WIDTH) if kind == ENC_DEC else None
    with torch.inference_mode():
        fast_cache, slow_cache = (layer.attn.new_cache(3, enc) for _ in range(2))
        for cache in (fast_cache, slow_cache):
            layer.forward_cached(x[:, :5], cache)  # a prefill chunk first, as sampling does
        step = layer_token_step(layer, fast_cache)
        for t in range(5, N_CTX):
            assert torch.equal(step(x[:, t]), layer.token_step(x[:, t], slow_cache)), f"position {t}"
        assert fast_cache.length == slow_cache.length == N_CTX
        assert torch.equal(fast_cache.key, slow_cache.key) and torch.equal(fast_cache.value, slow_cache.value)
