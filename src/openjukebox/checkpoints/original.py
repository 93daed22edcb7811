"""Conversion of the released Jukebox checkpoints (`*.pth.tar`) into our format.

The released files are `torch.save` dicts {'hps', 'model', 'opt', 'step', ...}; only 'model' (a state dict)
and 'hps' (hyper-parameters) are used. They are read with `torch.load(weights_only=True)`, which refuses to run
pickled code. `hps` was pickled as a `jukebox.hparams.Hyperparams` (a dict subclass); a data-only stand-in class
of that name is allow-listed so that it loads as a plain dict.

`VQVAE_KEY_MAP` is the one table linking the original parameter names to ours.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from openjukebox.checkpoints.format import load_state_dict_checked
from openjukebox.errors import OpenJukeboxError
from openjukebox.vqvae import VQVAE, VQVAEConfig, get_preset


class Hyperparams(dict):
    """Data-only stand-in for `jukebox.hparams.Hyperparams` (a dict with attribute access) for unpickling."""


Hyperparams.__module__ = "jukebox.hparams"


def _data_only_globals() -> list[Any]:
    """Classes that may appear in a checkpoint's hps/metrics and only rebuild data: our Hyperparams stand-in,
    numpy scalars and arrays (e.g. dataset bandwidth statistics) and their dtypes."""
    import numpy as np

    allowed: list[Any] = [Hyperparams, np.dtype, np.ndarray]
    multiarray = getattr(np, "_core", None) or np.core
    allowed += [multiarray.multiarray.scalar, multiarray.multiarray._reconstruct]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return allowed


# Original key pattern -> our key (str.format template over the named groups; `up` = step - 1, because a
# decoder block's `model.0` is its input projection and `model.1..n` its upsampling steps).
VQVAE_KEY_MAP: list[tuple[str, str]] = [
    (r"encoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.(?P<step>\d+)\.0\.(?P<p>weight|bias)",
     "encoders.{L}.blocks.{b}.downs.{step}.conv.{p}"),
    (r"encoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.(?P<step>\d+)\.1\.model\.(?P<d>\d+)\.model\.1\.(?P<p>weight|bias)",
     "encoders.{L}.blocks.{b}.downs.{step}.res.blocks.{d}.conv1.{p}"),
    (r"encoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.(?P<step>\d+)\.1\.model\.(?P<d>\d+)\.model\.3\.(?P<p>weight|bias)",
     "encoders.{L}.blocks.{b}.downs.{step}.res.blocks.{d}.conv2.{p}"),
    (r"encoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.(?P<step>\d+)\.(?P<p>weight|bias)",
     "encoders.{L}.blocks.{b}.proj.{p}"),
    (r"decoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.0\.(?P<p>weight|bias)",
     "decoders.{L}.blocks.{b}.proj.{p}"),
    (r"decoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.(?P<step>\d+)\.0\.model\.(?P<d>\d+)\.model\.1\.(?P<p>weight|bias)",
     "decoders.{L}.blocks.{b}.ups.{up}.res.blocks.{d}.conv1.{p}"),
    (r"decoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.(?P<step>\d+)\.0\.model\.(?P<d>\d+)\.model\.3\.(?P<p>weight|bias)",
     "decoders.{L}.blocks.{b}.ups.{up}.res.blocks.{d}.conv2.{p}"),
    (r"decoders\.(?P<L>\d+)\.level_blocks\.(?P<b>\d+)\.model\.(?P<step>\d+)\.1\.(?P<p>weight|bias)",
     "decoders.{L}.blocks.{b}.ups.{up}.conv.{p}"),
    (r"decoders\.(?P<L>\d+)\.out\.(?P<p>weight|bias)", "decoders.{L}.out.{p}"),
    (r"bottleneck\.level_blocks\.(?P<L>\d+)\.k", "codebooks.{L}.embed"),
]  # fmt: skip
_COMPILED = [(re.compile(pattern), template) for pattern, template in VQVAE_KEY_MAP]


def rename_vqvae_key(key: str) -> str | None:
    """Our name for an original VQ-VAE state-dict key, or None if it is not a VQ-VAE parameter."""
    key = key.removeprefix("module.")  # saved from a DDP wrapper
    for pattern, template in _COMPILED:
        m = pattern.fullmatch(key)
        if m:
            groups = m.groupdict()
            if "step" in groups:
                groups["up"] = int(groups["step"]) - 1
            return template.format(**groups)
    return None


# A legacy (pre-zip, torch < 1.6) `torch.save` file starts with a pickled magic number: PROTO, LONG1 of 10 bytes.
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def is_legacy_torch_file(path: str | os.PathLike) -> bool:
    """Whether `path` was written by `torch.save` in the legacy (non-zip) format, which cannot be memory-mapped."""
    with open(path, "rb") as f:
        head = f.read(14)
    return head[:1] == b"\x80" and head[2:14] == _LEGACY_MAGIC


def load_original(path: str | os.PathLike) -> dict[str, Any]:
    """Read a released `.pth.tar` safely (weights_only) and return its top-level dict.

    Zip-format files are memory-mapped (tensors are read from disk when touched); legacy-format files (torch < 1.6)
    cannot be, and are read whole into memory.
    """
    path = Path(path)
    if not path.is_file():
        raise OpenJukeboxError(f"{path}: no such file")
    legacy = False
    if not zipfile.is_zipfile(path):
        legacy = is_legacy_torch_file(path)
        if not legacy:
            with open(path, "rb") as f:
                if f.read(4) == b"PK\x03\x04":
                    raise OpenJukeboxError(f"{path}: truncated or damaged (a zip archive without its directory)")
            raise OpenJukeboxError(f"{path}: not a PyTorch checkpoint (expected a torch.save zip archive)")
    try:
        with torch.serialization.safe_globals(_data_only_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=not legacy)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise OpenJukeboxError(f"{path}: truncated or damaged ({str(e).splitlines()[0]})") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it would run {found.group(1)}" if found else "it holds more than weights and data"
        raise OpenJukeboxError(f"{path}: refused to load: {what} (not a released Jukebox checkpoint?)") from None
    except (RuntimeError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "enforce fail" in reason or "archive" in reason:
            reason = "a zip archive, but not one written by torch.save"
        if legacy:  # the header was that of a torch.save file: the rest is missing or damaged
            raise OpenJukeboxError(f"{path}: truncated or damaged ({reason})") from None
        raise OpenJukeboxError(f"{path}: not a PyTorch checkpoint ({reason})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise OpenJukeboxError(f"{path}: not a Jukebox checkpoint (no 'model' state dict)")
    return data


def _config_from_original(hps: dict[str, Any], state: dict[str, torch.Tensor]) -> VQVAEConfig:
    """Our VQ-VAE config from the checkpoint's hps where present, else from tensor shapes + official values."""
    base = get_preset("official")
    levels = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("bottleneck.level_blocks."))
    k0 = state["bottleneck.level_blocks.0.k"]
    downs_t = []
    for block in range(levels):
        step = re.compile(rf"encoders\.{levels - 1}\.level_blocks\.{block}\.model\.(\d+)\.0\.weight")
        downs_t.append(sum(1 for k in state if step.fullmatch(k)))
    widths = [state[f"encoders.{lv}.level_blocks.0.model.0.0.weight"].shape[0] for lv in range(levels)]
    depths = [
        len({k.split(".")[8] for k in state if k.startswith(f"encoders.{lv}.level_blocks.0.model.0.1.model.")})
        for lv in range(levels)
    ]
    width, depth = min(widths), min(depths)
    hidden = state["encoders.0.level_blocks.0.model.0.1.model.0.model.1.weight"].shape[0]
    inferred = {
        "levels": levels,
        "l_bins": k0.shape[0],
        "emb_width": k0.shape[1],
        "downs_t": tuple(downs_t),
        "strides_t": tuple(hps.get("strides_t", (2,) * levels)),
        "width": width,
        "depth": depth,
        "multipliers": tuple(w // width for w in widths),
        "m_conv": hidden / widths[0],
        "sample_rate": int(hps.get("sr", base.sample_rate)),
        "dilation_growth_rate": int(hps.get("dilation_growth_rate", base.dilation_growth_rate)),
        "dilation_cycle": hps.get("dilation_cycle", base.dilation_cycle),
        "reverse_decoder_dilation": bool(hps.get("vqvae_reverse_decoder_dilation", base.reverse_decoder_dilation)),
    }
    if [d * m for d, m in zip([depth] * levels, inferred["multipliers"])] != depths:
        raise OpenJukeboxError("checkpoint: residual depths do not follow the width multipliers")
    return VQVAEConfig(**{**base.to_dict(), **inferred, "loss": base.loss})


def import_vqvae(path: str | os.PathLike) -> VQVAE:
    """Convert a released `vqvae.pth.tar` into our VQ-VAE (eval mode), checking every tensor's name and shape."""
    data = load_original(path)
    hps = dict(data.get("hps") or {})
    original = data["model"]
    state: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in original.items():
        ours = rename_vqvae_key(key)
        if ours is None:
            unknown.append(key)
        else:
            state[ours] = value.float()
    if unknown or not any(k.startswith("bottleneck.") for k in original):
        example = ", ".join(unknown[:3]) or "no bottleneck codebooks"
        raise OpenJukeboxError(f"{path}: not a Jukebox VQ-VAE checkpoint (unexpected keys: {example})")
    try:
        config = _config_from_original(hps, original)
    except (KeyError, ValueError, ZeroDivisionError) as e:
        raise OpenJukeboxError(f"{path}: cannot infer the VQ-VAE shape ({e})") from None
    return vqvae_from_state(config, state, str(path))


def vqvae_from_state(config: VQVAEConfig, state: dict[str, torch.Tensor], where: str) -> VQVAE:
    """Our VQ-VAE (eval mode) from converted weights that lack the codebooks' EMA statistics (released and Hugging
    Face files store only the codes): those start as after a data-driven initialisation."""
    model = VQVAE(config)
    for level, codebook in enumerate(model.codebooks):
        embed = state[f"codebooks.{level}.embed"]
        state[f"codebooks.{level}.embed_sum"] = embed.clone()
        state[f"codebooks.{level}.cluster_size"] = torch.ones(codebook.l_bins)
        state[f"codebooks.{level}.initted"] = torch.tensor(True)
    load_state_dict_checked(model, state, where)
    return model.eval()
