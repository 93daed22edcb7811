"""Sampling one window of codes from a prior (Jukebox paper §4; the original's `SimplePrior.sample`,
`ConditionalAutoregressive2D.sample` / `primed_sample` and `filter_logits`).

A window is sampled autoregressively with the transformer's key/value cache (`AutoregressivePrior.new_cache` and
`forward_cached`): the known tokens (a prompt, and in merged-lyrics mode the lyric tokens before it) are run
through the model in chunks of `chunk_size` positions to fill the cache, then one token at a time is drawn from
the temperature-scaled, top-k / nucleus-filtered logits. Conditioning is computed once per window:

- labels: the artist/genre start embedding (`y_cond`) and, at the top level, the timing signal (`x_cond`);
- upsamplers: `x_cond` from the codes of the level above;
- lyrics, "encoder" mode (5b_lyrics): the lyrics encoder runs once and its keys/values are cached per layer;
- lyrics, "merged" mode (1b_lyrics): the lyric tokens are the forced prefix of one sequence whose music codes are
  shifted by n_vocab (x_cond is zero on the lyric positions); outputs are shifted back and clamped at 0, because
  the model may draw a lyric token at a music position (the original's prior_preprocess / prior_postprocess).

Speed: the cache is sized for the window's length (`new_cache(..., length)`), the loop runs under
`torch.inference_mode`, each step is one `forward_cached` call whose single-token path works on 2-D activations
through per-layer steps made once with the cache (`layer_token_step`, `TokenAttention`: weights, buffers and
views prepared: 15-17 tensor ops per layer), the weights are put in the original's (in, out) layout once
(`Transformer.use_decode_layout_`), the sampled token is fed back as it is (no indexing into the output), and the
random numbers of the draws are made several steps at a time (`TokenDraws`). Samples are batched (B rows per
step), and on several CPU threads a stack too large for the CPU caches multiplies by its weights held as column
blocks, one set per core (`Transformer.column_blocks`). None of this changes a sampled token: the arithmetic is
the same, op for op, sum for sum. On a GPU the step is instead captured once per window as a CUDA graph and
replayed per token (`prior/decode.py`, `decode="auto"`).

Randomness: every draw is what `torch.multinomial(probs, 1, replacement=True, generator=generator)` draws (on the
CPU an exact, faster form of it: see `draw`), which consumes the generator exactly as the original's
`Categorical(logits).sample()` consumes the global one, so with the same seed on CPU both give the same tokens.
With a generator the samples are a pure function of its seed; with None the global generator is used.

Classifier-free guidance (`guidance`, an addition to the original, off by default): each window is run for two
copies of the samples, the second with the artist and genre "unknown" (`data.songs.without_artist_genre`), and
every token is drawn from `unconditional + guidance * (conditional - unconditional)` logits
(`prior.decode.guided_logits`) and fed to both copies. It needs a prior that has seen "unknown" labels in training
(`prior train --label-dropout`); guidance 1 is the plain conditional sample (and runs one copy).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from openjukebox.data.songs import without_artist_genre
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior.autoregressive import AutoregressivePrior
from openjukebox.prior.decode import PositionDecoder, decode_mode, guidance_copies, guided_logits, to_copies

if TYPE_CHECKING:
    from openjukebox.prior.model import Prior

Progress = Callable[[int, int], None]  # (tokens sampled so far, tokens to sample) in this window


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Top-k, then nucleus (top-p) filtering; removed entries become -inf. Returns a new tensor.

    As the original: top_k is capped at the vocabulary size and keeps every token whose logit ties the k-th
    largest; nucleus filtering keeps the most likely tokens up to and including the first one at which the
    cumulative probability exceeds top_p, and always the most likely one. 0 turns either filter off. (The original
    refused both at once; here they compose, top-k first.)

    Args:
        logits: (..., bins)
    """
    top_k = min(top_k, logits.shape[-1])
    if top_k > 0:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p > 0.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        drop_sorted = torch.zeros_like(cumulative, dtype=torch.bool)
        drop_sorted[..., 1:] = cumulative[..., :-1] > top_p  # shift right: keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (B, bins) -> (B,), drawn as `Categorical(logits=logits).sample()` draws.

    Categorical normalises the logits (minus their logsumexp), takes their softmax and calls
    `torch.multinomial(probs, 1, True)`, which for one draw per row is the exponential race: argmax(probs / q) with
    q ~ Exp(1) drawn by `exponential_`, one element after another from the generator. On the CPU in fp32 the race
    is run here with the same numbers, made faster (`TokenDraws`); elsewhere multinomial is called.
    """
    return TokenDraws(generator, steps=1)(logits)


def _log_normaliser(logits: torch.Tensor) -> torch.Tensor:
    """`logits.logsumexp(-1, keepdim=True)` (B, 1), bit for bit, in the ops of torch's own implementation less
    the three that only matter for an infinite maximum (it zeroes such a maximum); callers reject non-finite
    results, which an infinite maximum always gives."""
    top = torch.amax(logits, dim=-1, keepdim=True)
    return (logits - top).exp_().sum(dim=-1, keepdim=True).log_().add_(top)


class TokenDraws:
    """`draw` for the `steps` tokens of one window: the same tokens, the generator left in the same state.

    On the CPU in fp32, q ~ Exp(1) is what `exponential_` makes in scalar code: fp32(-log1p(-u)) of the double
    u = `uniform_` draws of the same generator state. Here u comes from `uniform_` for several steps at once
    (block of <= 64k numbers, never past the window's last step, so the generator ends exactly where step-by-step
    draws leave it), l = fp32(log1p(-u)) = -q exactly (rounding is symmetric), and argmax(probs / q) =
    argmin(probs / l), first index on ties either way. `_exponential_race_is_exact` checks all this once per
    process against `torch.multinomial`; any other case (GPU, other dtypes, a torch whose kernels differ) calls
    multinomial. Non-finite logits (NaN, or a row without a finite entry) raise OpenJukeboxError, as multinomial
    raises. Nothing else may draw from the generator while the window's tokens are drawn.
    """

    BLOCK_NUMBERS = 1 << 16

    def __init__(self, generator: torch.Generator | None, steps: int):
        self.generator, self.left = generator, steps
        self.noise: list[torch.Tensor] = []  # blocks' rows, one (B, bins) tensor per step, next step last

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.device.type == "cpu" and logits.dtype == torch.float32 and _exponential_race_is_exact():
            return self.race(logits)
        self.left -= 1
        probs = F.softmax(logits - logits.logsumexp(dim=-1, keepdim=True), dim=-1)
        return torch.multinomial(probs, 1, replacement=True, generator=self.generator)[:, 0]

    def race(self, logits: torch.Tensor) -> torch.Tensor:
        """The CPU fp32 draw (B, bins) -> (B,), whether or not this torch build has been checked."""
        self.left -= 1
        lse = _log_normaliser(logits)
        if not math.isfinite(lse.sum().item()) and not torch.isfinite(lse).all():  # the sum: one cheap op per step
            raise OpenJukeboxError("the prior produced logits that are NaN or infinite: cannot draw a token")
        probs = F.softmax(logits - lse, dim=-1)
        if not self.noise or self.noise[-1].shape != probs.shape:
            self._refill(probs.shape)
        return torch.argmin(probs / self.noise.pop(), dim=-1)

    def _refill(self, shape: torch.Size) -> None:
        steps = max(1, min(self.left + 1, self.BLOCK_NUMBERS // math.prod(shape)))
        u = torch.empty((steps, *shape), dtype=torch.float64).uniform_(generator=self.generator)
        self.noise = list(u.neg_().log1p_().to(torch.float32).unbind(0))[::-1]


_RACE_EXACT: bool | None = None


def _exponential_race_is_exact() -> bool:
    """Whether `TokenDraws.race` gives multinomial's tokens (after Categorical's normalisation) and leaves the
    generator in multinomial's state on this torch build (checked once per process: 64 draws over 3000 bins, one
    step at a time and in one block)."""
    global _RACE_EXACT
    if _RACE_EXACT is None:
        logits = torch.randn(64, 1, 3000, generator=torch.Generator().manual_seed(0)) * 4
        want_gen = torch.Generator().manual_seed(1)
        probs = [F.softmax(x - x.logsumexp(-1, True), -1) for x in logits]
        want = [torch.multinomial(p, 1, True, generator=want_gen)[:, 0] for p in probs]
        exact = all(torch.equal(_log_normaliser(x), x.logsumexp(-1, True)) for x in logits)
        for block in (1, TokenDraws.BLOCK_NUMBERS):
            got_gen = torch.Generator().manual_seed(1)
            draws = TokenDraws(got_gen, steps=len(logits))
            draws.BLOCK_NUMBERS = block
            exact = exact and all(torch.equal(draws.race(x), w) for x, w in zip(logits, want))
            exact = exact and torch.equal(got_gen.get_state(), want_gen.get_state())
        _RACE_EXACT = exact
    return _RACE_EXACT


def check_sampling_options(
    temperature: float, top_k: int, top_p: float, chunk_size: int, guidance: float = 1.0
) -> None:
    """Raise OpenJukeboxError naming the first option out of range."""
    if not temperature > 0.0:
        raise OpenJukeboxError(f"temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise OpenJukeboxError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0.0 <= top_p <= 1.0:
        raise OpenJukeboxError(f"top_p must be in [0, 1] (0 = off), got {top_p}")
    if chunk_size < 1:
        raise OpenJukeboxError(f"chunk_size must be >= 1, got {chunk_size}")
    if not 0.0 <= guidance < math.inf:
        raise OpenJukeboxError(f"guidance must be a finite number >= 0 (1 = off), got {guidance}")


@torch.no_grad()
def sample_autoregressive(
    model: AutoregressivePrior,
    n_samples: int,
    length: int,
    known: torch.Tensor | None = None,
    x_cond: torch.Tensor | None = None,
    y_cond: torch.Tensor | None = None,
    encoder_kv: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    chunk_size: int = 32,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    decode: str = "auto",
    guidance: float = 1.0,
) -> torch.Tensor:
    """Tokens (B, length) of one sequence: `known` kept as is, the rest sampled (the original's primed_sample).

    The cache is filled with positions 0 .. K-1 (K known tokens; inputs: the start slot and known[:, :K-1]) in
    chunks of `chunk_size`, then each step feeds the last token and draws the next.

    Args:
        known: (B, K) tokens to continue, K <= length, or None.
        x_cond: (B, >= length, width) or (B, 1, width); y_cond: (B, 1, width); encoder_kv: (B, S, width).
        decode: the token loop (`prior.decode.decode_mode`): "auto" replays the step as a CUDA graph on a GPU and
            runs the eager loop (the original's tokens, bit for bit) elsewhere; "eager", "position", "graph".
        guidance: != 1: classifier-free guidance (module docstring); x_cond, y_cond and encoder_kv then have 2B
            rows, the conditional ones first, and `known` B rows.
    """
    device = model.x_emb.weight.device
    copies = guidance_copies(guidance)  # rows of the cache per sample
    rows = n_samples * copies
    out = torch.empty(rows, length, dtype=torch.long, device=device)
    n_known = 0 if known is None else known.shape[1]
    if known is not None:
        out[:, :n_known] = to_copies(known, copies)
    if n_known == length:
        return out[:n_samples]
    model.transformer.use_decode_layout_()  # once per model: weights column-major, read faster per step
    with torch.inference_mode():  # the cache and every step's temporaries skip autograd bookkeeping entirely
        cache = model.new_cache(rows, encoder_kv, length)  # sized for this window, not n_ctx
        for begin in range(0, n_known, chunk_size):  # prefill positions begin .. end - 1; their logits are unused
            end = min(begin + chunk_size, n_known)
            model.forward_cached(out[:, max(begin - 1, 0) : end - 1], cache, x_cond, y_cond, logits=False)
        last = out[:, n_known - 1 : n_known] if n_known else out[:, :0]  # the first step feeds the start slot
        mode = decode_mode(decode, out.device, length - n_known)
        if mode != "eager":
            decoder = PositionDecoder(model, cache, x_cond, temperature, top_k, top_p, generator, guidance)
            _decode_by_position(decoder, out, n_known, y_cond, mode, progress)
            return out[:n_samples]
        draws, drawn = TokenDraws(generator, length - n_known), []
        # Large CPU weights as column blocks while the tokens are drawn, so that every core streams them (not for a
        # handful of tokens: the blocks cost two copies of the weights per window).
        blocked = model.transformer.column_blocks(cache) if length - n_known >= 16 else contextlib.nullcontext()
        with blocked:
            for position in range(n_known, length):
                logits = model.forward_cached(last, cache, x_cond, y_cond)[:, -1]  # (B, bins)
                if logits.dtype != torch.float32:
                    logits = logits.float()
                if copies > 1:
                    logits = guided_logits(logits, guidance)  # (B, bins)
                if temperature != 1.0:  # dividing by 1 is exact: skip the op
                    logits = logits / temperature
                if top_k or top_p:
                    logits = filter_logits(logits, top_k, top_p)
                token = draws(logits)  # (B,)
                drawn.append(token)
                last = to_copies(token, copies).view(rows, 1)
                if progress is not None:
                    progress(position - n_known + 1, length - n_known)
        out[:n_samples, n_known:] = torch.stack(drawn, dim=1)
    return out[:n_samples]


def _decode_by_position(
    decoder: PositionDecoder,
    out: torch.Tensor,
    n_known: int,
    y_cond: torch.Tensor | None,
    mode: str,
    progress: Progress | None,
) -> None:
    """The tokens of `sample_autoregressive` after `n_known`, drawn by `decoder` into `out` (rows of the cache,
    length) (position 0, the start slot, goes through `forward_cached` first)."""
    model, cache, x_cond = decoder.model, decoder.cache, decoder.x_cond
    total, begin = out.shape[1] - n_known, n_known
    if begin == 0:
        out[:, 0] = decoder.fed(decoder.choose(model.forward_cached(out[:, :0], cache, x_cond, y_cond)[:, -1]))
        begin = 1
        if progress is not None:
            progress(1, total)

    def moved(done: int, _: int) -> None:
        if progress is not None:
            progress(done + begin - n_known, total)

    out[:, begin:] = decoder.fed(decoder.run(out[:, begin - 1], out.shape[1] - begin, mode, moved))


@dataclass
class WindowConditioning:
    """What one window of a `Prior` is sampled with (see `prepare_window`).

    x_cond: (B, n_ctx [+ n_tokens when merged], width) or None; y_cond: (B, 1, width) or None; encoder_kv:
    (B, n_tokens, width) in "encoder" lyrics mode; prefix: (B, n_tokens) lyric tokens in "merged" mode (the
    forced start of the sequence); shift: added to music codes in the model's vocabulary (n_vocab when merged).
    """

    x_cond: torch.Tensor | None
    y_cond: torch.Tensor | None
    encoder_kv: torch.Tensor | None
    prefix: torch.Tensor | None
    shift: int


@torch.no_grad()
def prepare_window(
    prior: Prior, n_samples: int, upper: torch.Tensor | None = None, y: torch.Tensor | None = None
) -> WindowConditioning:
    """Conditioning of one window: labels, timing, codes of the level above and lyrics, computed once."""
    c = prior.config
    if y is not None and y.shape[0] != n_samples:
        raise ValueError(f"y has {y.shape[0]} rows for {n_samples} samples")
    device = prior.prior.x_emb.weight.device
    y = None if y is None else y.to(device)
    upper = None if upper is None else upper.to(device)
    x_cond, y_cond, lyrics = prior.conditioning(y, upper, n_samples)
    if c.merged:
        assert lyrics is not None
        if x_cond is not None:  # no conditioning signal on the lyric positions
            x_cond = torch.cat([x_cond.new_zeros(n_samples, c.n_tokens, c.width), x_cond], dim=1)
        return WindowConditioning(x_cond, y_cond, None, lyrics, prior.n_vocab)
    encoder_kv = prior.encoder_kv(lyrics) if lyrics is not None else None
    return WindowConditioning(x_cond, y_cond, encoder_kv, None, 0)


@torch.no_grad()
def sample_prior(
    prior: Prior,
    n_samples: int,
    upper: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    prompt: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    chunk_size: int = 32,
    length: int | None = None,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    decode: str = "auto",
    guidance: float = 1.0,
) -> torch.Tensor:
    """Sample one window of codes from `prior`.

    Args:
        n_samples: batch size B.
        upper: (B, n_ctx // cond_downsample) codes of the level above over this window (upsamplers only).
        y: (B, y_length) label vector [total_length, offset, sample_length, artist, genres..., lyric tokens...]
            for priors with labels.
        prompt: (B, K) codes to continue (the window's first K codes), or None for an ancestral sample.
        temperature, top_k, top_p: logits are divided by temperature, then filtered (`filter_logits`).
        chunk_size: positions per forward pass while filling the cache with the prompt (and lyrics).
        length: codes to return (prompt included), default n_ctx; shorter windows are the original's
            `sample_tokens`.
        generator: source of randomness (on the model's device); None uses torch's global generator.
        progress: called as progress(done, total) after each sampled code.
        decode: the token loop, as `sample_autoregressive`.
        guidance: classifier-free guidance scale against the artist and genre "unknown" (module docstring); 1 =
            off (the original), which needs no labels.
    Returns:
        codes (B, length), prompt first.
    """
    c = prior.config
    length = c.n_ctx if length is None else length
    if not 1 <= length <= c.n_ctx:
        raise OpenJukeboxError(f"length must be in [1, {c.n_ctx}], got {length}")
    if n_samples < 1:
        raise OpenJukeboxError(f"n_samples must be >= 1, got {n_samples}")
    check_sampling_options(temperature, top_k, top_p, chunk_size, guidance)
    device = prior.prior.x_emb.weight.device
    copies = guidance_copies(guidance)
    if copies > 1:
        if c.labels is None or y is None:
            raise OpenJukeboxError("guidance needs a prior with artist and genre labels (and their label vector y)")
        y = torch.cat([y, without_artist_genre(y, c.labels.max_bow_genre_size)])
        upper = None if upper is None else to_copies(upper, copies)
    if prompt is not None:
        if prompt.dim() != 2 or prompt.shape[0] != n_samples or prompt.shape[1] > length:
            raise OpenJukeboxError(f"prompt must have shape ({n_samples}, <= {length}), got {tuple(prompt.shape)}")
        if prompt.numel() and not (int(prompt.min()) >= 0 and int(prompt.max()) < c.bins):
            raise OpenJukeboxError(f"prompt codes must be in [0, {c.bins})")
        prompt = prompt.to(device=device, dtype=torch.long)
    window = prepare_window(prior, n_samples * copies, upper, y)
    known = prompt
    if window.prefix is not None:
        music = window.prefix.new_zeros(n_samples, 0) if prompt is None else prompt + window.shift
        known = torch.cat([window.prefix[:n_samples], music], dim=1)
    n_prefix = 0 if window.prefix is None else window.prefix.shape[1]
    tokens = sample_autoregressive(
        prior.prior,
        n_samples,
        n_prefix + length,
        known,
        window.x_cond,
        window.y_cond,
        window.encoder_kv,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        chunk_size=chunk_size,
        generator=generator,
        progress=progress,
        decode=decode,
        guidance=guidance,
    )
    # Merged mode: back to this level's codes; a lyric token drawn at a music position becomes code 0.
    return (tokens[:, n_prefix:] - window.shift).clamp(min=0)
