"""A window's tokens decoded by one step replayed as a CUDA graph (issue 6: "CUDA graphs for the step").

On a GPU a one-token step of a Jukebox prior is well over a thousand small kernels (5b_lyrics: 72 layers of about
twenty each), and launching them one by one from Python can take longer than running them at batch 1: the GPU
waits on the host. `PositionDecoder` runs a step whose position is held in a device tensor
(`AutoregressivePrior.position_step`), so its kernels, shapes and buffers are the same at every position and no
value is read back to the host. On CUDA that step is captured once per window as a CUDA graph and replayed once
per token (`mode="graph"`); a replay launches the whole step in one call.

The draw is `torch.multinomial(probs, 1, replacement=True)`'s own algorithm for one sample, without its host-side
validity check: probs / q with q from `exponential_` of the same generator, argmax. So the graph draws the tokens
the eager loop draws from the same generator state (a CUDA test checks it), and leaves the generator where the
eager loop leaves it (a replay advances a registered generator by what the captured kernels consume). Non-finite
logits are recorded on the device and raise once, at the end of the window.

On the CPU the same decoder runs without capture (`mode="position"`); the tests use that to compare it with the
eager loop. Sampling on the CPU uses the eager loop (`mode="eager"`), whose tokens are the original's bit for bit;
the position step's attention sums over a fixed set of (partly masked) keys, so it agrees with it to rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from openjukebox.errors import OpenJukeboxError
from openjukebox.prior.autoregressive import AutoregressivePrior
from openjukebox.transformer.block import TransformerCache

DECODE_MODES = ("auto", "eager", "position", "graph")  # also in sample/settings.py, which may not import torch
GRAPH_MIN_STEPS = 64  # fewer tokens: the eager loop (capture takes time of its own; to be measured on a GPU)
Progress = Callable[[int, int], None]


def guidance_copies(guidance: float) -> int:
    """Rows of the cache per sample: 2 with classifier-free guidance (conditional, unconditional), 1 without
    (guidance 1, the original's sampler)."""
    return 1 if guidance == 1.0 else 2


def to_copies(tokens: torch.Tensor, copies: int) -> torch.Tensor:
    """Tokens of the samples (B, ...) -> the tokens of every row of the cache (the same for each of `copies`); as
    they are with one copy (no op in the token loop)."""
    return tokens if copies == 1 else tokens.repeat(copies, *([1] * (tokens.dim() - 1)))


def guided_logits(logits: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: logits (2B, bins), the conditional rows first -> (B, bins)
    `unconditional + guidance * (conditional - unconditional)`. (Per-row constants of either half only shift a row,
    so logits serve as well as log-probabilities.)"""
    conditional, unconditional = logits.chunk(2)
    return torch.lerp(unconditional, conditional, guidance)


def decode_mode(mode: str, device: torch.device, steps: int) -> str:
    """The loop to run `steps` tokens on `device` with: "auto" is "graph" on CUDA (for at least GRAPH_MIN_STEPS
    tokens), else "eager"; "graph" needs CUDA."""
    if mode not in DECODE_MODES:
        raise OpenJukeboxError(f"unknown decode mode {mode!r}; known: {', '.join(DECODE_MODES)}")
    if mode == "auto":
        return "graph" if device.type == "cuda" and steps >= GRAPH_MIN_STEPS else "eager"
    if mode == "graph" and device.type != "cuda":
        raise OpenJukeboxError(f"decode mode 'graph' needs a CUDA device, not {device.type}")
    return mode


class PositionDecoder:
    """Draws tokens with `AutoregressivePrior.position_step`, one step per token, captured as a CUDA graph when
    asked (module docstring).

    Args:
        model, cache: the prior and its cache, already filled with the window's known positions.
        x_cond: as for `forward_cached`: (B, T, width) over the whole sequence, (B, 1, width) or None.
        temperature, top_k, top_p: as `sample_autoregressive` (`filter_logits`).
        generator: the draws' generator (None: the device's default one).
        guidance: != 1: the cache holds two copies of the samples (conditional rows first) and each token is
            drawn from `guided_logits` and fed to both.
    """

    def __init__(
        self,
        model: AutoregressivePrior,
        cache: TransformerCache,
        x_cond: torch.Tensor | None,
        temperature: float,
        top_k: int,
        top_p: float,
        generator: torch.Generator | None,
        guidance: float = 1.0,
    ):
        from openjukebox.prior.sampling import filter_logits

        self.model, self.cache, self.x_cond = model, cache, x_cond
        self.temperature, self.top_k, self.top_p, self.generator = temperature, top_k, top_p, generator
        self._filter = filter_logits
        self.guidance, self.copies = guidance, guidance_copies(guidance)
        device = model.x_emb.weight.device
        batch = cache.batch
        self.position = torch.zeros(1, dtype=torch.long, device=device)  # the next step's position
        self.first = torch.zeros(1, dtype=torch.long, device=device)  # position of the first token drawn here
        self.token = torch.zeros(batch, dtype=torch.long, device=device)  # the input of the next step
        self.invalid = torch.zeros((), dtype=torch.bool, device=device)  # a draw saw non-finite logits
        self.drawn = torch.zeros(batch // self.copies, 0, dtype=torch.long, device=device)  # (B, steps), by `run`

    def fed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens of the samples (B, ...) -> the tokens of every row of the cache (`to_copies`)."""
        return to_copies(tokens, self.copies)

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """One token per sample from the logits of the cache's rows (B * copies, bins) -> (B,): guidance,
        temperature, filters, then multinomial's draw, with the validity check recorded in `invalid` instead of
        raised."""
        logits = logits.float()
        if self.copies > 1:
            logits = guided_logits(logits, self.guidance)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.top_k or self.top_p:
            logits = self._filter(logits, self.top_k, self.top_p)
        norm = logits.logsumexp(dim=-1, keepdim=True)
        self.invalid.logical_or_(~torch.isfinite(norm).all())
        probs = F.softmax(logits - norm, dim=-1)
        q = torch.empty_like(probs).exponential_(generator=self.generator)
        return torch.argmax(probs / q, dim=-1)

    def step(self) -> None:
        """Feed `token` at `position`, draw the next token into `token` and `drawn`, advance `position`."""
        logits = self.model.position_step(self.token, self.position, self.cache, self.x_cond)
        token = self.choose(logits)
        self.token.copy_(self.fed(token))
        self.drawn.index_copy_(1, self.position - self.first, token.view(-1, 1))
        self.position.add_(1)

    def run(
        self, last: torch.Tensor, steps: int, mode: str = "position", progress: Progress | None = None
    ) -> torch.Tensor:
        """Draw `steps` tokens after the cache's positions, the first step feeding `last` (B,) long (the last
        known token of every row of the cache). mode: "position" (each step run as it is) or "graph" (CUDA:
        captured once, replayed).
        Returns (B, steps); advances every layer cache's length; raises OpenJukeboxError on non-finite logits."""
        start = self.cache.length
        assert start > 0, "the first position (the start slot) is decoded with forward_cached"
        assert start + steps <= self.cache.layers[0].capacity, "the cache is too short for these steps"
        self.position.fill_(start)
        self.first.fill_(start)
        self.token.copy_(last)
        self.drawn = self.token.new_zeros(self.token.shape[0] // self.copies, steps)
        advance, first = self.step, 1
        if mode == "graph" and steps > 0:
            advance, first = self._capture(), 2  # runs the first step (capture's warm-up), captures the next
            if progress is not None:
                progress(1, steps)
        for done in range(first, steps + 1):
            advance()
            if progress is not None:
                progress(done, steps)
        for layer in self.cache.layers:
            layer.length = start + steps
        if bool(self.invalid):
            raise OpenJukeboxError("the prior produced logits that are NaN or infinite: cannot draw a token")
        return self.drawn

    def _capture(self) -> Callable[[], None]:
        """Run one step on a side stream (the warm-up CUDA graphs need: lazy initialisation, allocator pools),
        then capture the step as a graph; returns its `replay`. If capture fails, warns and returns `step`."""
        device = self.position.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            self.step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            if self.generator is not None and self.generator is not torch.cuda.default_generators[device.index or 0]:
                graph.register_generator_state(self.generator)
            with torch.cuda.graph(graph):
                self.step()
        except RuntimeError as e:  # a kernel that cannot be captured on this GPU or torch build
            warnings.warn(f"CUDA graph capture failed ({e}); decoding step by step", RuntimeWarning, stacklevel=3)
            return self.step
        return graph.replay
