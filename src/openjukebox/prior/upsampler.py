"""Upsampler conditioner: turns the codes of the level above into per-position conditioning.

An upsampler prior (levels 0 and 1) is conditioned on the codes of the level directly above it. Those
codes are embedded, run through a decoder-like stack (a 3-wide conv into `cond_width` channels, then
`down_t` times a dilated residual stack followed by a transposed conv that upsamples by `stride_t`,
the last one back to the prior's width) and layer-normalised. The result, (B, L * stride_t**down_t,
width), is added to the prior's own input embedding.

Unlike the VQ-VAE decoders, the residual dilations are not reversed (1, g, g^2, ... cycled), and each
residual branch may be scaled by 1/sqrt(depth) (`cond_res_scale`).

`convert_upsampler_conditioner_state_dict` maps the released checkpoints' `conditioner_blocks.0.*`
keys to this module's names, accepting both the plain `.model.` naming of the residual stacks and the
`.blocks.` naming of checkpoints saved with `checkpoint_res=1`.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from openjukebox.transformer.block import LayerNorm
from openjukebox.vqvae.encdec import ResNet1d, UpStep

ORIGINAL_PREFIX = "conditioner_blocks.0."


class UpsamplerConditioner(nn.Module):
    """Codes of the level above (B, L) -> conditioning (B, L * stride_t**down_t, width)."""

    def __init__(
        self,
        input_bins: int,
        width: int,
        down_t: int,
        stride_t: int,
        cond_width: int,
        cond_depth: int,
        cond_m_conv: float = 1.0,
        cond_dilation_growth_rate: int = 1,
        cond_dilation_cycle: int | None = None,
        cond_res_scale: bool = False,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if down_t < 1:
            raise ValueError(f"down_t must be >= 1, got {down_t}")
        self.width = width
        self.upsample = stride_t**down_t
        self.x_emb = nn.Embedding(input_bins, width)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)
        self.proj = nn.Conv1d(width, cond_width, kernel_size=3, padding=1)
        res_scale = 1.0 / math.sqrt(cond_depth) if cond_res_scale else 1.0
        self.ups = nn.ModuleList(
            UpStep(
                cond_width,
                width if i == down_t - 1 else cond_width,
                stride_t,
                ResNet1d(
                    cond_width,
                    cond_depth,
                    cond_m_conv,
                    cond_dilation_growth_rate,
                    cond_dilation_cycle,
                    reverse=False,
                    res_scale=res_scale,
                ),
            )
            for i in range(down_t)
        )
        self.ln = LayerNorm(width)

    def forward(self, z_upper: torch.Tensor) -> torch.Tensor:
        if z_upper.dim() != 2:
            raise ValueError(f"expected codes of shape (B, L), got {tuple(z_upper.shape)}")
        x = self.x_emb(z_upper.long()).permute(0, 2, 1)  # (B, width, L)
        x = self.proj(x)
        for up in self.ups:
            x = up(x)
        x = x.permute(0, 2, 1)  # (B, L * upsample, width)
        return self.ln(x)  # computed in fp32, cast back


_RES_KEY = re.compile(r"^cond\.model\.(\d+)\.0\.(?:model|blocks)\.(\d+)\.model\.([13])\.(weight|bias)$")
_UP_KEY = re.compile(r"^cond\.model\.(\d+)\.1\.(weight|bias)$")
_PROJ_KEY = re.compile(r"^cond\.model\.0\.(weight|bias)$")
_PLAIN_KEYS = {"x_emb.weight": "x_emb.weight", "ln.weight": "ln.weight", "ln.bias": "ln.bias"}


def rename_conditioner_key(key: str) -> str:
    if key in _PLAIN_KEYS:
        return _PLAIN_KEYS[key]
    if m := _PROJ_KEY.match(key):
        return f"proj.{m[1]}"
    if m := _RES_KEY.match(key):
        step, block, conv, kind = int(m[1]), m[2], m[3], m[4]
        if step < 1:
            raise KeyError(key)
        return f"ups.{step - 1}.res.blocks.{block}.conv{1 if conv == '1' else 2}.{kind}"
    if m := _UP_KEY.match(key):
        step = int(m[1])
        if step < 1:
            raise KeyError(key)
        return f"ups.{step - 1}.conv.{m[2]}"
    raise KeyError(key)


def convert_upsampler_conditioner_state_dict(original_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original `conditioner_blocks.0.*` tensors -> an `UpsamplerConditioner` state dict.

    Keys outside `conditioner_blocks.0.` (the rest of a prior checkpoint) are ignored; both the
    `.model.` and the checkpoint_res `.blocks.` naming of the residual stacks are accepted.
    Raises KeyError on an unrecognised conditioner key or when there are no conditioner keys.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in original_sd.items():
        if not key.startswith(ORIGINAL_PREFIX):
            continue
        sub = key[len(ORIGINAL_PREFIX) :]
        try:
            new_key = rename_conditioner_key(sub)
        except KeyError:
            raise KeyError(f"unrecognised upsampler conditioner key: {key}") from None
        if new_key in out:
            raise KeyError(f"duplicate upsampler conditioner key after conversion: {key}")
        out[new_key] = value
    if not out:
        raise KeyError(f"no '{ORIGINAL_PREFIX}*' keys in the state dict")
    return out
