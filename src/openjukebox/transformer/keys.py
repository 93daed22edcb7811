"""Map the original Jukebox transformer state-dict keys to ours (what the released `.pth.tar` files hold).

| original (under `..._attn_mods.{d}.`) | ours (under `...layers.{d}.`) | note                                  |
|---------------------------------------|-------------------------------|---------------------------------------|
| `attn.c_attn.w` / `.b`                | `attn.in_proj.weight` / `.bias` | fused q,k,v (q only in cross-attention) |
| `attn.c_enc_kv.w` / `.b`              | `attn.enc_kv.weight` / `.bias`  | cross-attention k,v                   |
| `attn.c_proj.w` / `.b`                | `attn.proj.weight` / `.bias`    |                                       |
| `mlp.c_fc.w` / `.b`                   | `mlp.fc.weight` / `.bias`       |                                       |
| `mlp.c_proj.w` / `.b`                 | `mlp.proj.weight` / `.bias`     |                                       |
| `ln_0.weight` / `.bias`               | `attn_norm.weight` / `.bias`    |                                       |
| `ln_1.weight` / `.bias`               | `mlp_norm.weight` / `.bias`     |                                       |

The original `Conv1D` stores `w` as (n_in, n_out) and computes `x @ w + b`; `nn.Linear` stores (n_out, n_in),
so every `.w` is transposed on import. Anything before `_attn_mods` (e.g. `prior.transformer.`) is kept as a
prefix with `_attn_mods` renamed to `layers`.
"""

from __future__ import annotations

import re

import torch

TRANSFORMER_KEY_MAP: list[tuple[str, str]] = [
    (r"(?P<pre>.*)_attn_mods\.(?P<d>\d+)\.attn\.c_attn\.(?P<p>w|b)", "{pre}layers.{d}.attn.in_proj.{p}"),
    (r"(?P<pre>.*)_attn_mods\.(?P<d>\d+)\.attn\.c_enc_kv\.(?P<p>w|b)", "{pre}layers.{d}.attn.enc_kv.{p}"),
    (r"(?P<pre>.*)_attn_mods\.(?P<d>\d+)\.attn\.c_proj\.(?P<p>w|b)", "{pre}layers.{d}.attn.proj.{p}"),
    (r"(?P<pre>.*)_attn_mods\.(?P<d>\d+)\.mlp\.c_fc\.(?P<p>w|b)", "{pre}layers.{d}.mlp.fc.{p}"),
    (r"(?P<pre>.*)_attn_mods\.(?P<d>\d+)\.mlp\.c_proj\.(?P<p>w|b)", "{pre}layers.{d}.mlp.proj.{p}"),
    (r"(?P<pre>.*)_attn_mods\.(?P<d>\d+)\.ln_0\.(?P<p>weight|bias)", "{pre}layers.{d}.attn_norm.{p}"),
    (r"(?P<pre>.*)_attn_mods\.(?P<d>\d+)\.ln_1\.(?P<p>weight|bias)", "{pre}layers.{d}.mlp_norm.{p}"),
]
_COMPILED = [(re.compile(pattern), template) for pattern, template in TRANSFORMER_KEY_MAP]
_CONV1D_PARAM = {"w": "weight", "b": "bias"}


def rename_transformer_key(key: str) -> tuple[str, bool] | None:
    """(our key, whether the tensor must be transposed) for an original transformer key, or None if not one."""
    key = key.removeprefix("module.")  # saved from a DDP wrapper
    for pattern, template in _COMPILED:
        m = pattern.fullmatch(key)
        if m:
            groups = m.groupdict()
            p = groups["p"]
            groups["p"] = _CONV1D_PARAM.get(p, p)
            return template.format(**groups), p == "w"
    return None


def convert_transformer_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from an original one; keys that are not transformer parameters are left out."""
    out = {}
    for key, value in state.items():
        renamed = rename_transformer_key(key)
        if renamed is None:
            continue
        new_key, transpose = renamed
        out[new_key] = value.t().contiguous() if transpose else value
    return out
