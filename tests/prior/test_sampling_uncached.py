"""The cached sampler draws exactly the tokens of a sampler without any cache (a full teacher-forced forward pass
for every new token) from the same seed, greedy and sampled, for each of the five released prior kinds (together
they use every attention kind: row, column, previous row, dense, cross-attention and prime)."""

from __future__ import annotations

import pytest
import torch
from test_sampling import KINDS, _inputs, _prior

from openjukebox.prior.sampling import draw, filter_logits, prepare_window, sample_prior


@torch.no_grad()
def uncached_sample(prior, n_samples, upper, y, length, temperature, top_k, generator) -> torch.Tensor:
    """Codes (B, length) drawn one at a time, each from a full forward pass over everything drawn so far."""
    c = prior.config
    window = prepare_window(prior, n_samples, upper, y)
    prefix = window.prefix if window.prefix is not None else torch.zeros(n_samples, 0, dtype=torch.long)
    n_prefix = prefix.shape[1]
    tokens = torch.zeros(n_samples, n_prefix + c.n_ctx, dtype=torch.long)  # padded to the whole window
    tokens[:, :n_prefix] = prefix
    for position in range(n_prefix, n_prefix + length):
        logits = prior.prior(tokens, window.x_cond, window.y_cond, window.encoder_kv)[:, position].float()
        tokens[:, position] = draw(filter_logits(logits / temperature, top_k, 0.0), generator)
    return (tokens[:, n_prefix : n_prefix + length] - window.shift).clamp(min=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, 0), (1.0, 1), (0.7, 5)], ids=["sampled", "greedy", "top5"])
def test_cached_sampler_draws_the_tokens_of_an_uncached_one(kind, temperature, top_k):
    prior = _prior(kind)
    inputs = _inputs(prior.config, batch=2)
    length = 24
    want = uncached_sample(
        prior, 2, inputs["upper"], inputs["y"], length, temperature, top_k, torch.Generator().manual_seed(11)
    )
    got = sample_prior(
        prior,
        2,
        inputs["upper"],
        inputs["y"],
        temperature=temperature,
        top_k=top_k,
        length=length,
        chunk_size=5,
        generator=torch.Generator().manual_seed(11),
    )
    assert torch.equal(got, want)
