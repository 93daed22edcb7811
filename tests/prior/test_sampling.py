"""Sampling one window from a prior: cached logits equal teacher-forced ones, logit filters, and the sampler's
contract (prompt kept, determinism from the generator, merged-lyrics shift, progress, option errors).

The five released prior kinds are built at small widths with their official heads and layer schedules (every
attention kind appears) and random weights everywhere, cross-attention included.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from openjukebox.data.songs import without_artist_genre
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior, PriorConfig, prior_preset, sampling
from openjukebox.prior.sampling import TokenDraws, draw, filter_logits, prepare_window, sample_prior

KINDS = ("5b", "5b_lyrics", "1b_lyrics", "upsampler_level_1", "upsampler_level_0")


def _ci_config(kind: str) -> PriorConfig:
    config = prior_preset(kind)
    if kind == "5b":
        return replace(config, width=64, depth=3, n_ctx=128, blocks=8)
    if kind == "5b_lyrics":
        encoder = replace(config.lyrics.encoder, width=32, depth=3, blocks=4)
        lyrics = replace(config.lyrics, n_tokens=32, encoder=encoder)
        return replace(config, width=64, depth=19, n_ctx=128, blocks=8, lyrics=lyrics)  # cross-attention at 18
    if kind == "1b_lyrics":  # prime attention at 15
        return replace(config, width=64, depth=16, n_ctx=96, blocks=4, lyrics=replace(config.lyrics, n_tokens=32))
    conditioner = replace(config.conditioner, width=16, depth=3)
    return replace(config, width=32, depth=3, n_ctx=128, blocks=8, conditioner=conditioner)


_PRIORS: dict[str, Prior] = {}


def _prior(kind: str) -> Prior:
    """The CI-size prior of `kind` with seeded random weights (LayerNorm gains around 1), built once."""
    if kind not in _PRIORS:
        torch.manual_seed(0)
        prior = Prior(_ci_config(kind)).eval()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for module in prior.modules():
                for name, p in module.named_parameters(recurse=False):
                    noise = torch.randn(p.shape, generator=g)
                    is_gain = isinstance(module, torch.nn.LayerNorm) and name == "weight"
                    p.copy_(1.0 + 0.1 * noise if is_gain else 0.05 * noise)
        _PRIORS[kind] = prior
    return _PRIORS[kind]


def _inputs(config: PriorConfig, batch: int = 2, seed: int = 3) -> dict:
    """codes (B, n_ctx), upper (B, n_ctx / 4) or None, y (B, y_length)."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, config.bins, (batch, config.n_ctx), generator=g)
    upper = None
    if config.cond_downsample is not None:
        upper = torch.randint(0, config.bins, (batch, config.n_ctx // config.cond_downsample), generator=g)
    labels = config.labels
    total = torch.full((batch, 1), int(config.sample_rate * (labels.min_duration or 60.0) * 1.5))
    offset = torch.randint(0, int(total[0, 0]) - config.sample_length, (batch, 1), generator=g)
    length = torch.full((batch, 1), config.sample_length)
    artist = torch.randint(0, labels.artist_bins, (batch, 1), generator=g)
    genre = torch.randint(0, labels.genre_bins, (batch, labels.max_bow_genre_size), generator=g)
    genre[:, math.ceil(labels.max_bow_genre_size / 2) :] = -1
    parts = [total, offset, length, artist, genre]
    if config.n_tokens:
        parts.append(torch.randint(1, config.lyrics.n_vocab, (batch, config.n_tokens), generator=g))
    return dict(codes=codes, upper=upper, y=torch.cat(parts, dim=1))


def cached_music_logits(prior: Prior, codes, upper, y, schedule: list[int]) -> torch.Tensor:
    """Music logits (B, T, bins) of codes (B, T) computed through the cache, `schedule[i]` positions per call."""
    window = prepare_window(prior, codes.shape[0], upper, y)
    tokens = codes + window.shift
    if window.prefix is not None:
        tokens = torch.cat([window.prefix, tokens], dim=1)
    assert sum(schedule) == tokens.shape[1]
    cache = prior.prior.new_cache(codes.shape[0], window.encoder_kv)
    outs, start = [], 0
    with torch.no_grad():
        for n in schedule:  # the first call adds the start slot: it feeds n - 1 tokens
            fed = tokens[:, max(start - 1, 0) : start + n - 1]
            outs.append(prior.prior.forward_cached(fed, cache, window.x_cond, window.y_cond))
            start += n
    n_prefix = tokens.shape[1] - codes.shape[1]
    return torch.cat(outs, dim=1)[:, n_prefix:, window.shift :]


@pytest.mark.parametrize("kind", KINDS)
def test_cached_logits_equal_teacher_forced(kind):
    prior = _prior(kind)
    c = prior.config
    inputs = _inputs(c)
    with torch.no_grad():
        want = prior(inputs["codes"], inputs["upper"], inputs["y"]).logits  # (B, n_ctx, bins)
    assert want.std() > 0.05  # logits that vary, so the comparison means something
    total = c.n_tokens * c.merged + c.n_ctx
    for schedule in ([1] * total, [37] + [1] * (total - 37), [16] * (total // 16)):
        got = cached_music_logits(prior, inputs["codes"], inputs["upper"], inputs["y"], schedule)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_filter_logits_top_k_keeps_the_k_largest_and_ties():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    out = filter_logits(logits, top_k=2)
    assert torch.isinf(out).tolist() == [[True, False, True, False, True], [False, False, True, True, True]]
    out = filter_logits(logits, top_k=3)  # the tie at 3.0 in row 0 makes the 3rd largest 2.0
    assert torch.isinf(out).sum(dim=1).tolist() == [2, 2]
    torch.testing.assert_close(filter_logits(logits, top_k=99), logits)  # capped at the vocabulary
    torch.testing.assert_close(filter_logits(logits), logits)  # both filters off
    assert out is not logits and not torch.isinf(logits).any()  # input untouched


def test_filter_logits_top_p_keeps_the_smallest_set_crossing_p():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: (~torch.isinf(filter_logits(logits, top_p=p))).tolist()[0]  # noqa: E731
    assert kept(0.5) == [True, False, True, False]  # 0.5 does not exceed 0.5; 0.5 + 0.3 does
    assert kept(0.45) == [True, False, False, False]  # the top token alone crosses p
    assert kept(0.01) == [True, False, False, False]  # the most likely token is always kept
    assert kept(0.85) == [True, False, True, True]
    assert kept(0.99) == [True, True, True, True]
    assert kept(0.6) == [True, False, True, False]
    both = filter_logits(logits, top_k=2, top_p=0.6)  # top-k first, then the nucleus of what is left (.625, .375)
    assert (~torch.isinf(both)).tolist()[0] == [True, False, False, False]


def test_draw_matches_categorical_from_the_same_seed():
    logits = torch.randn(3, 300, generator=torch.Generator().manual_seed(0)) * 3
    torch.manual_seed(5)
    want = torch.stack([torch.distributions.Categorical(logits=logits).sample() for _ in range(4)])
    g = torch.Generator().manual_seed(5)
    got = torch.stack([draw(logits, g) for _ in range(4)])
    assert torch.equal(got, want)


def _multinomial_window(logits: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (steps, B) drawn one step at a time as Categorical draws them, and the generator's state after."""
    g = torch.Generator().manual_seed(seed)
    tokens = [torch.multinomial(F.softmax(x - x.logsumexp(-1, True), -1), 1, True, generator=g)[:, 0] for x in logits]
    return torch.stack(tokens), g.get_state()


@pytest.mark.parametrize("block", [1, 1000, 6000, 1 << 16])
def test_window_draws_are_multinomials_tokens_and_generator_state(block, monkeypatch):
    # 40 steps of 3 rows over 700 bins; noise made in blocks of `block` numbers (1: one step at a time), and the
    # last block cut at the window's end, so the generator is left exactly where step-by-step draws leave it.
    logits = torch.randn(40, 3, 700, generator=torch.Generator().manual_seed(3)) * 3
    logits[5, 1, :650] = float("-inf")  # a filtered row (top-k): only the finite entries can be drawn
    want, want_state = _multinomial_window(logits, seed=9)
    assert sampling._exponential_race_is_exact()  # else TokenDraws calls multinomial and this tests nothing new
    monkeypatch.setattr(TokenDraws, "BLOCK_NUMBERS", block)
    g = torch.Generator().manual_seed(9)
    draws = TokenDraws(g, steps=len(logits))
    got = torch.stack([draws(x) for x in logits])
    assert torch.equal(got, want) and torch.equal(g.get_state(), want_state)
    assert bool((got[5, 1] >= 650).all())


def test_window_draws_fall_back_to_multinomial(monkeypatch):
    logits = torch.randn(6, 2, 300, generator=torch.Generator().manual_seed(4))
    want, _ = _multinomial_window(logits, seed=2)
    monkeypatch.setattr(sampling, "_RACE_EXACT", False)  # as on a torch build whose kernels differ
    draws = TokenDraws(torch.Generator().manual_seed(2), steps=6)
    assert torch.equal(torch.stack([draws(x) for x in logits]), want)


def test_log_normaliser_is_logsumexp_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    for scale in (1e-3, 1.0, 30.0, 1e4):
        logits = torch.randn(4, 2127, generator=g) * scale
        logits[0, 100:] = float("-inf")
        assert torch.equal(sampling._log_normaliser(logits), logits.logsumexp(-1, keepdim=True))


@pytest.mark.parametrize("bad", ["nan", "all -inf", "+inf"])
def test_non_finite_logits_are_refused(bad):
    logits = torch.randn(2, 50)
    if bad == "nan":
        logits[1, 3] = float("nan")
    elif bad == "all -inf":
        logits[0] = float("-inf")
    else:
        logits[1, 7] = float("inf")
    with pytest.raises(OpenJukeboxError, match="NaN or infinite"):
        TokenDraws(None, steps=1)(logits)


@pytest.mark.parametrize("kind", ["5b_lyrics", "1b_lyrics", "upsampler_level_0"])
def test_sampling_is_a_function_of_the_generator(kind):
    prior = _prior(kind)
    inputs = _inputs(prior.config)
    kwargs = dict(upper=inputs["upper"], y=inputs["y"], length=24, temperature=0.9)
    a = sample_prior(prior, 2, generator=torch.Generator().manual_seed(1), **kwargs)
    b = sample_prior(prior, 2, generator=torch.Generator().manual_seed(1), **kwargs)
    c = sample_prior(prior, 2, generator=torch.Generator().manual_seed(2), **kwargs)
    assert a.shape == (2, 24) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert int(a.min()) >= 0 and int(a.max()) < prior.config.bins


@pytest.mark.parametrize("kind", KINDS)
def test_primed_sample_keeps_the_prompt_and_follows_the_model(kind):
    prior = _prior(kind)
    c = prior.config
    inputs = _inputs(c)
    prompt = inputs["codes"][:, :21]
    calls = []
    codes = sample_prior(
        prior,
        2,
        upper=inputs["upper"],
        y=inputs["y"],
        prompt=prompt,
        top_k=1,  # greedy: every new code is the argmax of the teacher-forced logits of the result
        chunk_size=8,
        length=40,
        generator=torch.Generator().manual_seed(0),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert codes.shape == (2, 40)
    assert torch.equal(codes[:, :21], prompt)
    assert calls == [(i, 19) for i in range(1, 20)]
    full = torch.cat([codes, inputs["codes"][:, 40:]], dim=1)
    window = prepare_window(prior, 2, inputs["upper"], inputs["y"])
    tokens = full + window.shift
    if window.prefix is not None:  # merged lyrics: argmax over the merged vocabulary, shifted back and clamped
        tokens = torch.cat([window.prefix, tokens], dim=1)
    with torch.no_grad():
        logits = prior.prior(tokens, window.x_cond, window.y_cond, window.encoder_kv)[:, tokens.shape[1] - c.n_ctx :]
    raw = logits[:, 21:40].argmax(-1)  # (B, 19) in the model's vocabulary
    for row in range(2):
        # Merged lyrics: a lyric token drawn at a music position is fed back as is but returned as code 0, so the
        # recomputed logits agree only up to (and including) the first one.
        lyric = (raw[row] < window.shift).nonzero()
        n = int(lyric[0]) + 1 if len(lyric) else 19
        assert torch.equal(codes[row, 21 : 21 + n], (raw[row, :n] - window.shift).clamp(min=0))


@pytest.mark.parametrize("kind", KINDS)
def test_guided_sample_follows_the_guided_teacher_forced_logits(kind):
    """Classifier-free guidance: greedy codes are the argmax of lerp(unconditional, conditional, guidance) of the
    full (uncached) forward pass over the result, the unconditional pass with the artist and genre "unknown"."""
    prior = _prior(kind)
    c = prior.config
    inputs = _inputs(c)
    prompt, guidance = inputs["codes"][:, :9], 3.0
    codes = sample_prior(prior, 2, upper=inputs["upper"], y=inputs["y"], prompt=prompt, top_k=1, length=30,
                         guidance=guidance, chunk_size=4)  # fmt: skip
    assert torch.equal(codes[:, :9], prompt)
    full = torch.cat([codes, inputs["codes"][:, 30:]], dim=1)
    logits = []
    unknown = without_artist_genre(inputs["y"], c.labels.max_bow_genre_size)
    assert not torch.equal(unknown, inputs["y"])
    for y in (inputs["y"], unknown):
        window = prepare_window(prior, 2, inputs["upper"], y)
        tokens = full + window.shift
        if window.prefix is not None:
            tokens = torch.cat([window.prefix, tokens], dim=1)
        with torch.no_grad():
            out = prior.prior(tokens, window.x_cond, window.y_cond, window.encoder_kv)[:, tokens.shape[1] - c.n_ctx :]
        logits.append(out[:, 9:30])
    assert (logits[0] - logits[1]).abs().max() > 1e-3  # the labels change the logits: guidance has work to do
    raw = torch.lerp(logits[1], logits[0], guidance).argmax(-1)  # (B, 21)
    if c.cond_downsample is None:  # (the random upsamplers' greedy paths follow the codes above, labels or not)
        plain = sample_prior(prior, 2, upper=inputs["upper"], y=inputs["y"], prompt=prompt, top_k=1, length=30)
        assert not torch.equal(plain, codes)  # guidance changed the greedy path
    for row in range(2):  # merged lyrics: comparable up to the first lyric token (as in the primed test)
        lyric = (raw[row] < window.shift).nonzero()
        n = int(lyric[0]) + 1 if len(lyric) else 21
        assert torch.equal(codes[row, 9 : 9 + n], (raw[row, :n] - window.shift).clamp(min=0))


def test_guidance_needs_labels_and_a_finite_scale():
    prior = _prior("5b")
    y = _inputs(prior.config)["y"]
    with pytest.raises(OpenJukeboxError, match="guidance needs a prior with artist and genre labels"):
        sample_prior(prior, 2, length=8, guidance=2.0)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(OpenJukeboxError, match="guidance must be"):
            sample_prior(prior, 2, y=y, length=8, guidance=bad)


class _Favour(torch.nn.Module):
    """An output projection that makes one token by far the most likely."""

    def __init__(self, inner: torch.nn.Module, token: int):
        super().__init__()
        self.inner, self.token = inner, token

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.inner(h)
        logits[..., self.token] += 1e3
        return logits


def test_merged_mode_clamps_lyric_tokens_drawn_at_music_positions():
    prior = _prior("1b_lyrics")
    inputs = _inputs(prior.config)
    x_out = prior.prior.x_out
    prior.prior.x_out = _Favour(x_out, token=5)  # lyric token 5, at every position
    try:
        codes = sample_prior(prior, 2, y=inputs["y"], length=8)
    finally:
        prior.prior.x_out = x_out
    assert torch.equal(codes, torch.zeros(2, 8, dtype=torch.long))


def test_full_prompt_is_returned_without_sampling():
    prior = _prior("5b")
    inputs = _inputs(prior.config)
    prompt = inputs["codes"][:, :16]
    assert torch.equal(sample_prior(prior, 2, y=inputs["y"], prompt=prompt, length=16), prompt)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(top_k=-1), "top_k"),
        (dict(top_p=1.5), "top_p"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(length=0), "length"),
        (dict(length=129), "length"),
        (dict(prompt=torch.zeros(2, 20, dtype=torch.long), length=10), "prompt"),
        (dict(prompt=torch.full((2, 4), 2048)), "prompt codes"),
    ],
)
def test_bad_options_raise_user_errors(kwargs, message):
    prior = _prior("5b")
    y = _inputs(prior.config)["y"]
    with pytest.raises(OpenJukeboxError, match=message):
        sample_prior(prior, 2, y=y, **kwargs)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _weights(prior: Prior) -> dict[str, tuple[torch.Tensor, tuple[int, ...]]]:
    return {name: (p.detach().clone(), p.stride()) for name, p in prior.named_parameters()}


@pytest.mark.parametrize("kind", ["5b_lyrics", "1b_lyrics", "upsampler_level_0"])
def test_column_blocks_draw_the_same_tokens_and_give_the_weights_back(kind, monkeypatch, two_threads):
    """With the size limits lowered, the token loop multiplies by column blocks (P = 4, or 2 where 4 would be
    narrower than 12 columns; narrower weights are left as they are) and draws the bits `addmm` draws;
    afterwards every weight is back, same values, same layout."""
    from openjukebox.transformer import block

    prior = _prior(kind)
    inputs = _inputs(prior.config)
    kwargs = dict(upper=inputs["upper"], y=inputs["y"], prompt=inputs["codes"][:, :7], temperature=0.9)
    want = sample_prior(prior, 2, generator=torch.Generator().manual_seed(4), **kwargs)  # too small to block
    before = _weights(prior)
    calls = []
    product = block._blocked_addmm
    monkeypatch.setattr(block, "_blocked_addmm", lambda *a, **k: calls.append(a[2].shape) or product(*a, **k))
    for limit, value in (("BLOCK_MIN_TOTAL_BYTES", 0), ("BLOCK_MIN_BYTES", 0), ("BLOCK_MIN_COLUMNS", 12)):
        monkeypatch.setattr(block, limit, value)
    got = sample_prior(prior, 2, generator=torch.Generator().manual_seed(4), **kwargs)
    assert torch.equal(got, want)
    assert calls and {shape[0] for shape in calls} <= {2, 4}  # blocked products ran
    after = _weights(prior)
    assert after.keys() == before.keys()
    for name, (value, stride) in before.items():
        assert torch.equal(after[name][0], value) and after[name][1] == stride, name


def test_column_blocks_give_the_weights_back_after_an_error(monkeypatch, two_threads):
    from openjukebox.transformer import block

    for limit, value in (("BLOCK_MIN_TOTAL_BYTES", 0), ("BLOCK_MIN_BYTES", 0), ("BLOCK_MIN_COLUMNS", 12)):
        monkeypatch.setattr(block, limit, value)
    prior = _prior("5b")
    stack = prior.prior.transformer
    stack.use_decode_layout_()
    before = _weights(prior)
    cache = prior.prior.new_cache(2, None, 16)
    with pytest.raises(RuntimeError, match="stop"), stack.column_blocks(cache):
        assert stack.layers[0].attn.in_proj.weight.numel() == 0  # its storage is the blocks' now
        raise RuntimeError("stop")
    assert cache.steps == []
    for name, (value, stride) in _weights(prior).items():
        assert torch.equal(value, before[name][0]) and stride == before[name][1], name
