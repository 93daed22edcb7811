"""Cached sampling of our `Prior` against the original `SimplePrior.sample` (test-only jukebox-infer) on CPU.

Both priors share random weights (`build_pair`). The original draws with `Categorical(logits).sample()` from the
global generator; ours draws the same way from a generator seeded alike, so the same seed must give the same
codes, for an ancestral sample and for a primed continuation (chunked prefill), at full and at sharpened
temperature and with top-k. Random weights give nearly flat distributions, where a draw depends mostly on the
noise, so the logits along the original's sampled path (its `get_preds`) are compared too, and so are our cached
logits with our teacher-forced ones.

The whole hierarchy is compared too: our `Pipeline` against the original's window loop (`_sample`) on three priors
with shared weights: an ancestral sample with one generator seeded once (our rng "original", the original as it
is), and upsampling of given top codes and the continuation of codes cut short with each window's generator
seeded as ours seeds it (our default rng; a primed sample continues the codes of its encoded prompt).

Not compared: top-p, because the original's nucleus filter fails on torch >= 2 (`scatter` of a bool source into a
uint8 mask); `tests/prior/test_sampling.py` checks our filter against the rule instead.
"""

from __future__ import annotations

import pytest
import torch
from reference_prior import KINDS, build_hierarchy, build_pair, make_inputs, reference_hierarchy

from openjukebox.prior.sampling import prepare_window, sample_prior
from openjukebox.sample.pipeline import Song

pytest.importorskip("jukebox_infer")

LENGTH, PROMPT, CHUNK = 48, 21, 8  # 48 codes cross rows of 16 codes (block_ctx) at CI size
CASES = {  # name: (temperature, top_k)
    "plain": (1.0, 0),
    "sharp": (0.05, 0),
    "top_k": (0.9, 5),
}


@pytest.fixture(autouse=True)
def _cpu_long_tensor(monkeypatch):
    # The original asserts `isinstance(x, t.cuda.LongTensor)`; on CPU let that check accept CPU tensors.
    monkeypatch.setattr(torch.cuda, "LongTensor", torch.LongTensor, raising=False)


_PAIRS: dict[str, tuple] = {}


def _pair(kind: str):
    if kind not in _PAIRS:
        ref, ours = build_pair(kind, "ci")
        _PAIRS[kind] = (ref.eval(), ours.eval())  # the original samples in eval mode only
    return _PAIRS[kind]


def _reference_with_logits(ref, inputs: dict, prompt, temperature: float, top_k: int, seed: int):
    """The original's tokens and logits along its own sampled path: (codes (B, LENGTH), tokens (B, T), logits
    (B, T, vocab)), where tokens and logits are over the model's whole sequence and vocabulary (lyrics first in
    merged mode, before music tokens are shifted back and clamped).

    Follows `SimplePrior.sample` down to `ConditionalAutoregressive2D.sample` / `primed_sample`, whose
    `get_preds` returns the logits of every position.
    """
    n = inputs["codes"].shape[0]
    z_conds = [inputs["upper"]] if inputs["upper"] is not None else None
    kwargs = dict(fp16=False, temp=temperature, top_k=top_k, top_p=0.0, get_preds=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        x_cond, y_cond, lyrics = ref.get_cond(z_conds, inputs["y"])
        if ref.single_enc_dec:
            z, x_cond = ref.prior_preprocess([lyrics] if prompt is None else [lyrics, prompt], [None, x_cond])
            tokens, preds = ref.prior.primed_sample(
                n, z, x_cond, y_cond, chunk_size=CHUNK, sample_tokens=ref.n_tokens + LENGTH, **kwargs
            )
            return ref.prior_postprocess(tokens.clone()), tokens, preds
        encoder_kv = ref.get_encoder_kv(lyrics, sample=True)
        if prompt is None:
            tokens, preds = ref.prior.sample(n, x_cond, y_cond, encoder_kv, sample_tokens=LENGTH, **kwargs)
        else:
            tokens, preds = ref.prior.primed_sample(
                n, prompt, x_cond, y_cond, encoder_kv, chunk_size=CHUNK, sample_tokens=LENGTH, **kwargs
            )
        return tokens, tokens, preds


def _our_cached_logits(ours, tokens, inputs: dict) -> torch.Tensor:
    """Our logits (B, T, vocab) along tokens (B, T) of the model's sequence (lyrics first in merged mode): a
    chunked prefill, then one position per call."""
    window = prepare_window(ours, tokens.shape[0], inputs["upper"], inputs["y"])
    cache = ours.prior.new_cache(tokens.shape[0], window.encoder_kv)
    with torch.no_grad():
        outs = [ours.prior.forward_cached(tokens[:, : CHUNK - 1], cache, window.x_cond, window.y_cond)]
        for p in range(CHUNK, tokens.shape[1]):
            outs.append(ours.prior.forward_cached(tokens[:, p - 1 : p], cache, window.x_cond, window.y_cond))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("primed", [False, True], ids=["ancestral", "primed"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_the_original_codes(kind, case, primed):
    ref, ours = _pair(kind)
    temperature, top_k = CASES[case]
    inputs = make_inputs(ours.config, batch=2)
    prompt = inputs["codes"][:, :PROMPT] if primed else None
    seed = 1234
    z_conds = [inputs["upper"]] if inputs["upper"] is not None else None
    torch.manual_seed(seed)
    with torch.no_grad():
        want = ref.sample(
            2, z=prompt, z_conds=z_conds, y=inputs["y"], fp16=False, temp=temperature, top_k=top_k, top_p=0.0,
            chunk_size=CHUNK, sample_tokens=LENGTH,
        )  # fmt: skip
    got = sample_prior(
        ours,
        2,
        upper=inputs["upper"],
        y=inputs["y"],
        prompt=prompt,
        temperature=temperature,
        top_k=top_k,
        chunk_size=CHUNK,
        length=LENGTH,
        generator=torch.Generator().manual_seed(seed),
    )
    assert got.shape == want.shape == (2, LENGTH)
    assert torch.equal(got, want)


@pytest.mark.parametrize("primed", [False, True], ids=["ancestral", "primed"])
@pytest.mark.parametrize("kind", KINDS)
def test_logits_along_the_original_sampled_path(kind, primed):
    ref, ours = _pair(kind)
    inputs = make_inputs(ours.config, batch=2)
    prompt = inputs["codes"][:, :PROMPT] if primed else None
    codes, tokens, want_logits = _reference_with_logits(ref, inputs, prompt, 1.0, 0, seed=99)
    got = sample_prior(
        ours, 2, upper=inputs["upper"], y=inputs["y"], prompt=prompt, chunk_size=CHUNK, length=LENGTH,
        generator=torch.Generator().manual_seed(99),
    )  # fmt: skip
    assert torch.equal(got, codes)
    got_logits = _our_cached_logits(ours, tokens, inputs)
    n_tokens = ours.config.n_tokens if ours.config.merged else 0
    assert got_logits.shape == want_logits.shape == (2, n_tokens + LENGTH, ours.prior.input_bins)
    torch.testing.assert_close(got_logits, want_logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_cached_logits_equal_teacher_forced(kind):
    _, ours = _pair(kind)
    inputs = make_inputs(ours.config, batch=2)
    window = prepare_window(ours, 2, inputs["upper"], inputs["y"])
    tokens = inputs["codes"] + window.shift
    if window.prefix is not None:
        tokens = torch.cat([window.prefix, tokens], dim=1)
    with torch.no_grad():
        want = ours(inputs["codes"], inputs["upper"], inputs["y"]).logits
    got = _our_cached_logits(ours, tokens, inputs)[:, -ours.config.n_ctx :, window.shift :]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


HIERARCHY_SONG = dict(
    artist="alan jackson", genre="country", lyrics="we sang about the sea " * 6, total_length=20 * 44100, offset=0
)
HIERARCHY_LENGTH = 100 * 128  # 100 top-level codes: several windows at every level (contexts 96 / 128 / 128 codes)


@pytest.fixture(scope="module")
def hierarchy():
    return build_hierarchy("ci")


def _same_codes(got: dict, want: dict, batch: int = 2) -> None:
    for level in (2, 1, 0):
        assert got[level].shape == (batch, HIERARCHY_LENGTH // (8, 32, 128)[level]), f"level {level}"
        assert torch.equal(got[level], want[level]), f"level {level}"


def test_whole_hierarchy_gives_the_original_codes(hierarchy):
    # Three levels (1b_lyrics top, both upsamplers) sampled by our Pipeline drawing from one generator seeded with
    # the seed (rng "original") and by the original's window loop as it is after torch.manual_seed(seed): the window
    # starts, the context each window is primed with, the labels (offsets, lyric windows), the codes of the level
    # above each upsampler window conditions on, the order of the draws and every drawn token must agree. Four
    # samples: the top level draws them in chunks of 3 and 1 (its default batch limit), in order, on both sides.
    refs, pipeline = hierarchy
    want, _ = reference_hierarchy(refs, 4, HIERARCHY_LENGTH, HIERARCHY_SONG, seed=3, window_seeds=False)
    stream = torch.Generator().manual_seed(3)
    got = pipeline.ancestral_sample(Song(**HIERARCHY_SONG), 4, HIERARCHY_LENGTH, seed=0, generator=stream)
    _same_codes(got, want, batch=4)


@pytest.mark.parametrize("mode", ["upsample", "continue"])
def test_upsample_and_continue_give_the_original_codes(hierarchy, mode):
    # Our default rng ("window") against the original's loop with each window's generator seeded as ours.
    # upsample: both render levels 1 and 0 under the same top-level codes; continue: both extend the first 40 % of
    # every level (a song cut short) to the whole length, skipping the windows that hold nothing new.
    refs, pipeline = hierarchy
    song = Song(**HIERARCHY_SONG)
    top = pipeline.sample_levels({2: torch.zeros(2, 0, dtype=torch.long)}, song, HIERARCHY_LENGTH, [2], seed=8)[2]
    if mode == "upsample":
        start, levels = {2: top}, (0, 1)
    else:
        full = pipeline.upsample({2: top}, song, HIERARCHY_LENGTH, seed=8)
        start, levels = {level: z[:, : z.shape[1] * 2 // 5] for level, z in full.items()}, (0, 1, 2)
    want, _ = reference_hierarchy(refs, 2, HIERARCHY_LENGTH, HIERARCHY_SONG, seed=5, zs=start, levels=levels)
    run = pipeline.upsample if mode == "upsample" else pipeline.continue_sample
    got = run(dict(start), song, HIERARCHY_LENGTH, seed=5)
    _same_codes(got, want)
    if mode == "continue":
        assert all(torch.equal(got[level][:, : z.shape[1]], z) for level, z in start.items())  # prefix kept
