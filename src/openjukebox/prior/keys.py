"""Map a released prior checkpoint's state dict (the original `SimplePrior`) to our `Prior`.

| original                          | ours                     | converted by                                  |
|-----------------------------------|--------------------------|-----------------------------------------------|
| `prior.*`                         | `prior.*`                | `convert_autoregressive_state_dict`           |
| `prime_prior.*`                   | `lyrics_encoder.*`       | `convert_autoregressive_state_dict`           |
| `prime_state_proj.w` / `.b`       | `lyrics_proj.weight` / `.bias` | transposed (Conv1D stores (n_in, n_out)) |
| `prime_state_ln.weight` / `.bias` | `lyrics_norm.*`          |                                               |
| `prime_x_out.weight`              | `lyrics_out.weight`      |                                               |
| `y_emb.*`                         | `labels.*`               | `convert_label_state_dict`                    |
| `conditioner_blocks.0.*`          | `conditioner.*`          | `convert_upsampler_conditioner_state_dict`    |

`rename_prior_key` renames one key (for streaming imports that never hold the whole checkpoint); any key it does
not know is an error, so a wrong or truncated checkpoint fails loudly instead of loading half a model.
"""

from __future__ import annotations

import torch

from openjukebox.errors import OpenJukeboxError
from openjukebox.prior.labels import LABEL_KEY_MAP
from openjukebox.prior.upsampler import ORIGINAL_PREFIX as CONDITIONER_PREFIX
from openjukebox.prior.upsampler import rename_conditioner_key
from openjukebox.transformer.keys import rename_transformer_key

_AUTOREGRESSIVE_PLAIN = {
    "x_emb.weight": "x_emb.weight",
    "pos_emb.pos_emb": "pos_emb",
    "start_token": "start_token",
    "x_out.weight": "x_out.weight",
}
_LYRICS_PLAIN = {
    "prime_state_proj.w": ("lyrics_proj.weight", True),
    "prime_state_proj.b": ("lyrics_proj.bias", False),
    "prime_state_ln.weight": ("lyrics_norm.weight", False),
    "prime_state_ln.bias": ("lyrics_norm.bias", False),
    "prime_x_out.weight": ("lyrics_out.weight", False),
}
_AUTOREGRESSIVE_PREFIXES = {"prior.": "prior.", "prime_prior.": "lyrics_encoder."}


def rename_prior_key(key: str) -> tuple[str, bool]:
    """(our key, whether to transpose the tensor) for an original `SimplePrior` key; OpenJukeboxError if unknown."""
    key = key.removeprefix("module.")
    if key in _LYRICS_PLAIN:
        return _LYRICS_PLAIN[key]
    for theirs, ours in _AUTOREGRESSIVE_PREFIXES.items():
        if key.startswith(theirs):
            rest = key[len(theirs) :]
            if rest in _AUTOREGRESSIVE_PLAIN:
                return ours + _AUTOREGRESSIVE_PLAIN[rest], False
            renamed = rename_transformer_key(rest)
            if renamed is not None:
                return ours + renamed[0], renamed[1]
    if key.startswith("y_emb.") and key[len("y_emb.") :] in LABEL_KEY_MAP:
        return "labels." + LABEL_KEY_MAP[key[len("y_emb.") :]], False
    if key.startswith(CONDITIONER_PREFIX):
        try:
            return "conditioner." + rename_conditioner_key(key[len(CONDITIONER_PREFIX) :]), False
        except KeyError:
            pass
    raise OpenJukeboxError(f"unknown prior checkpoint key {key!r}")


def convert_prior_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our `Prior` state dict from an original `SimplePrior` state dict."""
    out: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        new_key, transpose = rename_prior_key(key)
        if new_key in out:
            raise OpenJukeboxError(f"two checkpoint keys map to {new_key!r} (second: {key!r})")
        out[new_key] = value.t().contiguous() if transpose else value
    return out
