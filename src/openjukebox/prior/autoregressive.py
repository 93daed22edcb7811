"""Autoregressive prior over one level's codes, teacher-forced (the original `ConditionalAutoregressive2D`).

Input at position t is the embedding of token t-1; position 0 holds the artist/genre/timing embedding
(`y_cond`, (B, 1, W)) or, without label conditioning, a learned `start_token`. A learned position embedding
(n_ctx, W) and the per-position conditioning `x_cond` (from the upsampler conditioner, or zeros) are added,
the factored-attention transformer runs, and (unless `merged_decoder`) `x_cond` is added once more before the
output projection. Without `merged_decoder` the output projection shares its weight with the input embedding.
The loss (`bits_per_token`) is the mean cross-entropy in bits per token (natural-log cross-entropy / ln 2).

Sampling (the original's `sample` / `primed_sample`) decodes incrementally: `new_cache` preallocates the
transformer's key/value cache and `forward_cached` appends tokens to the input sequence [start, x_0, x_1, ...]
and returns the logits at the new positions; the token loop and logit filtering live in `prior/sampling.py`.

`convert_autoregressive_state_dict` maps the original keys (under an optional prefix, e.g. `prior.`):

| original                   | ours                        |
|----------------------------|-----------------------------|
| `x_emb.weight`             | `x_emb.weight`              |
| `pos_emb.pos_emb`          | `pos_emb`                   |
| `start_token`              | `start_token`               |
| `transformer._attn_mods.*` | `transformer.layers.*` (see `openjukebox.transformer.keys`) |
| `x_out.weight`             | `x_out.weight`              |
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from openjukebox.transformer import Transformer, TransformerConfig
from openjukebox.transformer.block import TransformerCache
from openjukebox.transformer.keys import convert_transformer_state_dict

_PLAIN_KEYS = {
    "x_emb.weight": "x_emb.weight",
    "pos_emb.pos_emb": "pos_emb",
    "start_token": "start_token",
    "x_out.weight": "x_out.weight",
}


def bits_per_token(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (..., bins) against targets (...) in bits per token (computed in fp32)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long()) / math.log(2.0)


class AutoregressivePrior(nn.Module):
    """Tokens (B, T) -> logits (B, T, input_bins), or the last activations (B, T, width) if `only_encode`.

    Args:
        config: the transformer stack (its n_ctx is the sequence length).
        input_bins: vocabulary size.
        merged_decoder: untied output projection and no second `x_cond` add (the 5b models).
        y_cond: position 0 holds the label start embedding; otherwise a learned start token.
        only_encode: no output projection (the 5b_lyrics lyrics encoder).
    """

    def __init__(
        self,
        config: TransformerConfig,
        input_bins: int,
        merged_decoder: bool = False,
        y_cond: bool = False,
        only_encode: bool = False,
    ) -> None:
        super().__init__()
        width, init_scale = config.width, config.init_scale
        self.input_bins, self.width, self.n_ctx = input_bins, width, config.n_ctx
        self.merged_decoder, self.y_cond, self.only_encode = merged_decoder, y_cond, only_encode
        self.x_emb = nn.Embedding(input_bins, width)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)
        if not y_cond:
            self.start_token = nn.Parameter(torch.randn(1, width) * (0.01 * init_scale))
        self.pos_emb = nn.Parameter(torch.randn(config.n_ctx, width) * (0.01 * init_scale))
        self.transformer = Transformer(config)
        if not only_encode:
            self.x_out = nn.Linear(width, input_bins, bias=False)
            if not merged_decoder:
                self.x_out.weight = self.x_emb.weight

    def embed(self, x: torch.Tensor, x_cond: torch.Tensor | None, y_cond: torch.Tensor | None) -> torch.Tensor:
        """Transformer input: shifted token embeddings, start slot, position embedding and `x_cond`."""
        b, t = x.shape
        if t > self.n_ctx:
            raise ValueError(f"sequence of {t} tokens is longer than n_ctx={self.n_ctx}")
        if self.y_cond:
            if y_cond is None or y_cond.shape != (b, 1, self.width):
                raise ValueError(f"y_cond of shape {(b, 1, self.width)} is required")
            start = y_cond.to(self.x_emb.weight.dtype)
        else:
            if y_cond is not None:
                raise ValueError("this prior has no label conditioning; y_cond must be None")
            start = self.start_token.expand(b, 1, self.width)
        h = torch.cat([start, self.x_emb(x[:, :-1])], dim=1)
        h = h + self.pos_emb[:t]
        if x_cond is not None:
            h = h + x_cond
        return h

    def forward(
        self,
        x: torch.Tensor,
        x_cond: torch.Tensor | None = None,
        y_cond: torch.Tensor | None = None,
        encoder_kv: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T) tokens; x_cond: (B, T, width) or (B, 1, width); y_cond: (B, 1, width); encoder_kv: (B, S, width).

        Returns logits (B, T, input_bins), or activations (B, T, width) when `only_encode`.
        """
        x = x.long()
        if x.dim() != 2:
            x = x.reshape(x.shape[0], -1)
        h = self.embed(x, x_cond, y_cond)
        h = self.transformer(h, encoder_kv=encoder_kv)
        if not self.merged_decoder and x_cond is not None:
            h = h + x_cond
        if self.only_encode:
            return h
        return self.x_out(h)

    # -- incremental decoding ------------------------------------------------------------------------------------

    def new_cache(
        self, batch: int, encoder_kv: torch.Tensor | None = None, length: int | None = None
    ) -> TransformerCache:
        """Empty key/value caches for decoding `batch` sequences; encoder_kv (B, S, width) for cross-attention;
        length: positions that will be decoded (default n_ctx; a shorter window allocates less)."""
        return self.transformer.new_cache(batch, encoder_kv, length)

    def forward_cached(
        self,
        x: torch.Tensor,
        cache: TransformerCache,
        x_cond: torch.Tensor | None = None,
        y_cond: torch.Tensor | None = None,
        logits: bool = True,
    ) -> torch.Tensor:
        """Append tokens to the input sequence [start, x_0, x_1, ...] and return the logits at the new positions.

        The first call (empty cache) also places the start slot (y_cond, or the learned start token) at position
        0, so it computes x.shape[1] + 1 positions; later calls compute x.shape[1]. The logits at position p
        predict token p, so feeding the tokens sampled so far always yields the next token's logits.

        Args:
            x: (B, L) tokens, L >= 0 (L = 0 only on the first call).
            cache: from `new_cache`, updated in place.
            x_cond: (B, T, width) over the whole sequence (T >= the last position + 1) or (B, 1, width).
            y_cond: (B, 1, width) when the prior has label conditioning.
            logits: False when only the cache matters (priming a window with known tokens, as the original's
                primed_sample): the output head is skipped and the transformer's output returned.
        Returns:
            logits (B, L', input_bins), or activations (B, L', width) when `only_encode` or not `logits`.
        """
        b, start = x.shape[0], cache.length
        if logits and start > 0 and x.shape[1] == 1 and x.dtype == torch.long and start < self.n_ctx:
            return self._token_step(x, cache, x_cond, start)
        h = F.embedding(x if x.dtype == torch.long else x.long(), self.x_emb.weight)  # (B, L, W)
        if start == 0:
            if self.y_cond:
                if y_cond is None or y_cond.shape != (b, 1, self.width):
                    raise ValueError(f"y_cond of shape {(b, 1, self.width)} is required")
                first = y_cond.to(self.x_emb.weight.dtype)
            else:
                if y_cond is not None:
                    raise ValueError("this prior has no label conditioning; y_cond must be None")
                first = self.start_token.expand(b, 1, self.width)
            h = torch.cat([first, h], dim=1)
        n = h.shape[1]
        if n == 0 or start + n > self.n_ctx:
            raise ValueError(f"cannot decode positions {start}..{start + n - 1} of a context of {self.n_ctx}")
        h = h + self.pos_emb[start : start + n]
        cond = None
        if x_cond is not None:
            cond = x_cond if x_cond.shape[1] == 1 else x_cond[:, start : start + n]
            h = h + cond
        h = self.transformer.forward(h, cache=cache)
        return self._head(h, cond) if logits else h

    def _head(self, h: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The transformer's output h (..., W) to logits (or activations when `only_encode`), as `forward` does."""
        if not self.merged_decoder and cond is not None:
            h = h + cond
        return h if self.only_encode else self.x_out(h)

    def _token_step(
        self, x: torch.Tensor, cache: TransformerCache, x_cond: torch.Tensor | None, start: int
    ) -> torch.Tensor:
        """`forward_cached` of one token x (B, 1) at position start > 0: the sampling step, called once per token,
        so the same ops with nothing around them (no checks, 3-D views or slices of the position tables)."""
        b = x.shape[0]
        h = F.embedding(x.view(b), self.x_emb.weight) + self.pos_emb[start]  # (B, W)
        cond = None
        if x_cond is not None:
            cond = x_cond[:, 0] if x_cond.shape[1] == 1 else x_cond[:, start]
            h = h + cond
        for step in cache.steps or self.transformer.token_steps(cache):
            h = step(h)
        return self._head(h, cond).view(b, 1, -1)

    def position_step(
        self, x: torch.Tensor, position: torch.Tensor, cache: TransformerCache, x_cond: torch.Tensor | None
    ) -> torch.Tensor:
        """`forward_cached` of one token x (B,) long at the position held in `position` ((1,) long, > 0, on the
        model's device) -> logits (B, input_bins): `Transformer.position_step` with the embedding, position table
        and x_cond row looked up by tensor index, for a step captured as a CUDA graph (`prior.decode`). cache.length
        is not advanced."""
        h = self.x_emb.weight.index_select(0, x) + self.pos_emb.index_select(0, position)  # (B, W)
        cond = None
        if x_cond is not None:
            cond = x_cond[:, 0] if x_cond.shape[1] == 1 else x_cond.index_select(1, position)[:, 0]
            h = h + cond
        return self._head(self.transformer.position_step(h, cache, position), cond)


def convert_autoregressive_state_dict(
    original_sd: dict[str, torch.Tensor], prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Our `AutoregressivePrior` state dict from original `ConditionalAutoregressive2D` keys under `prefix`.

    Keys outside `prefix` are left out, as are those that are not parameters of the prior itself.
    """
    selected: dict[str, torch.Tensor] = {}
    for key, value in original_sd.items():
        key = key.removeprefix("module.")
        if key.startswith(prefix):
            selected[key[len(prefix) :]] = value
    out = {ours: selected[orig] for orig, ours in _PLAIN_KEYS.items() if orig in selected}
    transformer_sd = {k: v for k, v in selected.items() if k.startswith("transformer._attn_mods.")}
    out.update(convert_transformer_state_dict(transformer_sd))
    return out
