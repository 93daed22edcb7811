"""Recorded attention weights are the ones the layer used: a manual computation of softmax(q k^T) and the layer
output rebuilt from the weights, for cross-attention (kind 6) and prime attention (kind 7)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from prior_weights import randomised

from openjukebox.align.attention import (
    attention_output,
    attention_weights,
    lyric_layers,
    record_layers,
    run_recorded,
    window_attention,
    window_attentions,
)
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior, prior_preset
from openjukebox.prior.config import LyricsConfig


def merged_config():
    """A tiny 1b_lyrics-style prior: one [lyrics | music] sequence, prime attention at layer 15."""
    return replace(
        prior_preset("tiny", 2),
        depth=16,
        attn_order=12,
        merged_decoder=False,
        lyrics=LyricsConfig(mode="merged", n_tokens=16, n_vocab=80, alignment_layer=15, alignment_head=1),
    )


def inputs(prior: Prior, batch: int = 2, seed: int = 1):
    c = prior.config
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, c.bins, (batch, c.n_ctx), generator=g)
    y = torch.zeros(batch, c.y_length, dtype=torch.long)
    y[:, 0] = 10 * c.sample_length
    y[:, 2] = c.sample_length
    y[:, 4] = 1
    y[:, -c.n_tokens :] = torch.randint(1, c.lyrics.n_vocab, (batch, c.n_tokens), generator=g)
    return codes, y


def manual_weights(attn, x, encoder_kv):
    """softmax(q k^T / sqrt(d_head)) per head, from the weight matrices."""
    n_state, heads = attn.n_state, attn.heads
    d = n_state // heads
    if encoder_kv is not None:
        q = x @ attn.in_proj.weight.T + attn.in_proj.bias
        k = (encoder_kv @ attn.enc_kv.weight.T + attn.enc_kv.bias)[..., :n_state]
        mask = None
    else:
        qkv = x @ attn.in_proj.weight.T + attn.in_proj.bias
        q, k = qkv[..., :n_state], qkv[..., n_state : 2 * n_state][:, : attn.prime_keys]
        mask = torch.ones(x.shape[1], k.shape[1], dtype=torch.bool).tril()
    b, t, s = x.shape[0], x.shape[1], k.shape[1]
    out = torch.empty(b, heads, t, s)
    for h in range(heads):
        scores = q[..., h * d : (h + 1) * d] @ k[..., h * d : (h + 1) * d].transpose(1, 2) / math.sqrt(d)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out[:, h] = scores.softmax(-1)
    return out


@pytest.mark.parametrize("merged", [False, True])
def test_weights_are_the_ones_the_layer_used(merged):
    torch.manual_seed(0)
    prior = randomised(Prior(merged_config() if merged else prior_preset("tiny", 2)))
    c = prior.config
    layer, _ = c.alignment
    assert prior.prior.transformer.layers[layer].attn_func == (7 if merged else 6)
    codes, y = inputs(prior)
    with record_layers(prior, [layer], stop=False) as calls, torch.no_grad():
        prior(codes, None, y)
    call = calls[layer]
    attn = prior.prior.transformer.layers[layer].attn
    with torch.no_grad():
        weights = attention_weights(attn, call)
        expected = manual_weights(attn, call.x, call.encoder_kv)
        torch.testing.assert_close(weights, expected, atol=1e-5, rtol=1e-4)
        rebuilt = attention_output(attn, call, weights)
    assert call.output.abs().max() > 1e-3  # a real output, not the zero-initialised projection
    torch.testing.assert_close(rebuilt, call.output, atol=1e-5, rtol=1e-4)
    # every head's rows are distributions; prime attention is causal over its key prefix
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    if merged:
        n = c.n_tokens
        assert weights.shape[-1] == attn.prime_keys == 20
        assert torch.all(weights[:, :, n, n + 1 :] == 0) and torch.all(weights[:, :, n, : n + 1] > 0)


@pytest.mark.parametrize("merged", [False, True])
def test_window_attention_is_music_over_lyrics(merged):
    prior = randomised(Prior(merged_config() if merged else prior_preset("tiny", 2)), seed=3)
    c = prior.config
    layer, head = c.alignment
    codes, y = inputs(prior, batch=2)
    w = window_attention(prior, codes, y, layer=layer, head=head)
    assert w.shape == (2, c.n_ctx, c.n_tokens) and w.dtype == torch.float32
    with record_layers(prior, [layer], stop=False) as calls, torch.no_grad():
        prior(codes, None, y)
    attn = prior.prior.transformer.layers[layer].attn
    full = manual_weights(attn, calls[layer].x, calls[layer].encoder_kv)[:, head]
    expected = full[:, c.n_tokens :, : c.n_tokens] if merged else full
    torch.testing.assert_close(w, expected, atol=1e-5, rtol=1e-4)
    sums = w.sum(-1)
    if merged:  # the mass on the first music positions of the prefix is left out
        assert torch.all(sums <= 1 + 1e-5) and torch.all(sums > 0)
    else:
        torch.testing.assert_close(sums, torch.ones_like(sums))


def test_stopping_early_changes_nothing_and_hooks_are_removed():
    prior = randomised(Prior(prior_preset("tiny", 2)), seed=5)
    codes, y = inputs(prior)
    layers = lyric_layers(prior)
    assert layers == [9]
    with record_layers(prior, layers, stop=True) as early:
        run_recorded(prior, codes, y, None)
    with record_layers(prior, layers, stop=False) as full:
        run_recorded(prior, codes, y, None)
    torch.testing.assert_close(early[9].output, full[9].output)
    assert all(not layer.attn._forward_hooks for layer in prior.prior.transformer.layers)
    assert set(window_attentions(prior, codes, y)) == {9}


def test_bad_layer_head_and_prior_without_lyrics():
    prior = randomised(Prior(prior_preset("tiny", 2)))
    codes, y = inputs(prior)
    with pytest.raises(OpenJukeboxError, match="not a lyrics layer"):
        window_attention(prior, codes, y, layer=0, head=0)
    with pytest.raises(OpenJukeboxError, match="head 5 does not exist"):
        window_attention(prior, codes, y, layer=9, head=5)
    with pytest.raises(OpenJukeboxError, match="layer 40 does not exist"):
        window_attention(prior, codes, y, layer=40, head=0)
    plain = Prior(prior_preset("tiny", 1)).eval()
    with pytest.raises(OpenJukeboxError, match="no lyrics"):
        window_attentions(plain, torch.zeros(1, plain.config.n_ctx, dtype=torch.long), y)


def test_official_alignment_layers_attend_to_lyrics():
    from openjukebox.transformer.block import attn_func_for_layer

    for name, kind in (("5b_lyrics", 6), ("1b_lyrics", 7)):
        c = prior_preset(name)
        layer, head = c.alignment
        assert attn_func_for_layer(c.attn_order, layer) == kind and head < c.heads
