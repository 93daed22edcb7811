"""The position-in-a-tensor step and the CUDA-graph decoder (`prior.decode`): on the CPU, the step run as it is
against the eager token step (logits to rounding, the same tokens and generator state); on a GPU, the captured
graph against the same step run op by op (the same tokens), and against the eager loop.

The priors are the five released kinds at CI widths from test_sampling (every attention kind, cross-attention and
the merged-lyrics prime attention included), with 128-position windows that cross several rows.
"""

from __future__ import annotations

import pytest
import torch
from test_sampling import KINDS, _inputs, _prior

from openjukebox.errors import OpenJukeboxError
from openjukebox.prior.decode import GRAPH_MIN_STEPS, PositionDecoder, decode_mode
from openjukebox.prior.sampling import prepare_window, sample_prior

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _window_tokens(prior, batch: int = 2):
    """(conditioning, the window's whole input sequence (B, T): lyric prefix, then music codes)."""
    inputs = _inputs(prior.config, batch=batch)
    window = prepare_window(prior, batch, inputs["upper"], inputs["y"])
    tokens = inputs["codes"] + window.shift
    if window.prefix is not None:
        tokens = torch.cat([window.prefix, tokens], dim=1)
    return window, tokens


def _on(device: str, prior, dtype: torch.dtype):
    """A copy of `prior` on `device` in `dtype` (the shared CPU prior stays as it is)."""
    import copy

    return copy.deepcopy(prior).to(device=device, dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-6), (torch.bfloat16, 0.05)], ids=["fp32", "bf16"])
def test_position_step_logits_agree_with_the_token_step(kind, dtype, atol):
    """Teacher-forced through the cache one position at a time, after the start slot: the position step gives the
    eager token step's logits at every position (rows, columns, ring rows, prime prefix and beyond); in bf16 (the
    GPU's precision, run here on the CPU) to its rounding (logits are ~0.2 here)."""
    prior = _on("cpu", _prior(kind), dtype) if dtype != torch.float32 else _prior(kind)
    model = prior.prior
    window, tokens = _window_tokens(prior)
    n = tokens.shape[1]
    logits = {}
    with torch.inference_mode():
        for mode in ("eager", "position"):
            cache = model.new_cache(2, window.encoder_kv, n)
            rows = [model.forward_cached(tokens[:, :0], cache, window.x_cond, window.y_cond)[:, -1]]
            position = torch.zeros(1, dtype=torch.long)
            for p in range(1, n):
                if mode == "eager":
                    rows.append(model.forward_cached(tokens[:, p - 1 : p], cache, window.x_cond, window.y_cond)[:, -1])
                else:
                    rows.append(model.position_step(tokens[:, p - 1], position.fill_(p), cache, window.x_cond))
            logits[mode] = torch.stack(rows, dim=1).float()
    torch.testing.assert_close(logits["position"], logits["eager"], rtol=0, atol=atol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "prompt, options",
    [(0, {}), (5, {"top_k": 20}), (40, {"top_p": 0.9, "temperature": 0.9}), (5, {"guidance": 3.0, "top_k": 20})],
    ids=["ancestral", "primed-top-k", "primed-top-p", "primed-guided"],
)
def test_position_decoding_draws_the_eager_tokens(kind, prompt, options):
    prior = _prior(kind)
    inputs = _inputs(prior.config, batch=3)
    codes, states, ticks = {}, {}, {}
    for mode in ("eager", "position"):
        g = torch.Generator().manual_seed(7)
        ticks[mode] = []
        codes[mode] = sample_prior(
            prior, 3, inputs["upper"], inputs["y"], prompt=inputs["codes"][:, :prompt] if prompt else None,
            generator=g, decode=mode, progress=lambda done, total, m=mode: ticks[m].append((done, total)), **options,
        )  # fmt: skip
        states[mode] = g.get_state()
    assert torch.equal(codes["position"], codes["eager"])
    assert torch.equal(states["position"], states["eager"])  # the generator ends where the eager loop leaves it
    n = prior.config.n_ctx - prompt
    assert ticks["position"] == ticks["eager"] == [(i, n) for i in range(1, n + 1)]


def test_position_decoding_samples_in_bf16():
    """The GPU's precision through the whole position loop (on the CPU): codes in range, the prompt kept."""
    prior = _on("cpu", _prior("1b_lyrics"), torch.bfloat16)
    inputs = _inputs(prior.config, batch=2)
    prompt = inputs["codes"][:, :5]
    codes = sample_prior(prior, 2, y=inputs["y"], prompt=prompt, length=30, decode="position")
    assert codes.shape == (2, 30) and torch.equal(codes[:, :5], prompt)
    assert int(codes.min()) >= 0 and int(codes.max()) < prior.config.bins


def test_the_draw_is_multinomials():
    """`choose` draws what torch.multinomial draws from the same generator, and consumes it the same way."""
    prior = _prior("5b")
    model = prior.prior
    cache = model.new_cache(4, None, 8)
    g_ours, g_want = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    decoder = PositionDecoder(model, cache, None, 1.0, 0, 0.0, g_ours)
    for logits in torch.randn(20, 4, prior.config.bins, generator=torch.Generator().manual_seed(0)) * 3:
        probs = torch.softmax(logits - logits.logsumexp(-1, keepdim=True), dim=-1)
        want = torch.multinomial(probs, 1, replacement=True, generator=g_want)[:, 0]
        assert torch.equal(decoder.choose(logits), want)
    assert torch.equal(g_ours.get_state(), g_want.get_state())
    assert not decoder.invalid


def test_decode_modes():
    from openjukebox.prior import decode
    from openjukebox.sample import settings

    assert settings.DECODE_MODES == decode.DECODE_MODES  # the CLI's copy, kept free of torch
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert decode_mode("auto", cpu, 1000) == "eager"
    assert decode_mode("auto", gpu, GRAPH_MIN_STEPS) == "graph"
    assert decode_mode("auto", gpu, GRAPH_MIN_STEPS - 1) == "eager"
    assert decode_mode("position", cpu, 3) == "position"
    with pytest.raises(OpenJukeboxError, match="needs a CUDA device"):
        decode_mode("graph", cpu, 1000)
    with pytest.raises(OpenJukeboxError, match="unknown decode mode 'fast'"):
        decode_mode("fast", cpu, 1000)


def test_position_decoding_refuses_non_finite_logits():
    prior = _prior("upsampler_level_0")
    inputs = _inputs(prior.config, batch=1)
    original = prior.prior.x_out.weight.detach().clone()
    try:
        with torch.no_grad():
            prior.prior.x_out.weight[3, 0] = float("nan")
        with pytest.raises(OpenJukeboxError, match="NaN or infinite"):
            sample_prior(prior, 1, inputs["upper"], inputs["y"], length=20, decode="position")
    finally:
        with torch.no_grad():
            prior.prior.x_out.weight.copy_(original)


@cuda
@pytest.mark.filterwarnings("error:CUDA graph capture failed:RuntimeWarning")  # no silent fallback to op by op
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cuda_graph_replays_the_position_step(kind, dtype):
    """The captured graph draws the same tokens as the same step launched op by op, and leaves the generator in
    the same state (a replay advances it as the captured kernels consume it)."""
    prior = _on("cuda", _prior(kind), dtype)
    inputs = _inputs(prior.config, batch=3)
    upper = None if inputs["upper"] is None else inputs["upper"].cuda()
    codes, states = {}, {}
    for mode in ("position", "graph"):
        g = torch.Generator("cuda").manual_seed(11)
        codes[mode] = sample_prior(prior, 3, upper, inputs["y"].cuda(), prompt=inputs["codes"][:, :5].cuda(),
                                   generator=g, decode=mode)  # fmt: skip
        states[mode] = g.get_state()
    assert torch.equal(codes["graph"], codes["position"])
    assert torch.equal(states["graph"], states["position"])


@cuda
@pytest.mark.filterwarnings("error:CUDA graph capture failed:RuntimeWarning")
@pytest.mark.parametrize("kind", ["5b_lyrics", "1b_lyrics", "upsampler_level_0"])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_cuda_graph_draws_the_eager_tokens_in_fp32(kind, guidance):
    """In fp32 the graph's logits equal the eager loop's to rounding, and its draw is multinomial's: the tokens
    and the generator state are the eager loop's."""
    prior = _on("cuda", _prior(kind), torch.float32)
    inputs = _inputs(prior.config, batch=2)
    upper = None if inputs["upper"] is None else inputs["upper"].cuda()
    codes, states = {}, {}
    for mode in ("eager", "auto"):
        g = torch.Generator("cuda").manual_seed(3)
        codes[mode] = sample_prior(prior, 2, upper, inputs["y"].cuda(), generator=g, decode=mode, guidance=guidance)
        states[mode] = g.get_state()
    assert torch.equal(codes["auto"], codes["eager"])
    assert torch.equal(states["auto"], states["eager"])
