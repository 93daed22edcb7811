"""Import of the Hugging Face `transformers` port of Jukebox (`openai/jukebox-1b-lyrics`, `openai/jukebox-5b-lyrics`).

The port (transformers <= 4.40.2, removed in 5) stores the whole hierarchy as one model folder: `config.json`
(model_type "jukebox") and `pytorch_model.bin` or `model.safetensors`, either whole or sharded with an index json.
Its state dict holds `vqvae.*` and `priors.N.*`, N = 2 - level (the top prior first), under names that differ from
the released `.pth.tar` files. Rather than a second conversion path, every key is renamed back to the original
name (`hf_vqvae_key_to_original`, `hf_prior_key_to_original`) and then goes through the importers of the released
files: `original.VQVAE_KEY_MAP` and its config inference for the VQ-VAE, `rename_prior_key`,
`prior_config_from_original` and the streaming safetensors writer of `original_prior` for the priors.

| Hugging Face                                              | original                                         |
|-----------------------------------------------------------|--------------------------------------------------|
| `metadata_embedding.{bow_genre,artist}_emb.weight`        | `y_emb.{bow_genre,artist}_emb.emb.weight`        |
| `metadata_embedding.{total_length,...}_emb.emb.weight`    | `y_emb.{total_length,...}_emb.emb.weight`        |
| `{prior,encoder}.embed_tokens.weight`                     | `{prior,prime_prior}.x_emb.weight`               |
| `prior.fc_proj_out.weight`                                | `prior.x_out.weight`                             |
| `*.transformer._attn_mods.N.layer_norm_{0,1}.*`           | `*.transformer._attn_mods.N.ln_{0,1}.*`          |
| `*.transformer._attn_mods.N.{attn,mlp}.*.weight` / `.bias`| `.w` / `.b` (same (n_in, n_out) orientation)     |
| `encoder.proj_in` / `final_layer_norm` / `lm_head`        | `prime_state_proj` / `prime_state_ln` / `prime_x_out` |
| `conditioner_blocks.{embed_tokens,layer_norm}`            | `conditioner_blocks.0.{x_emb,ln}`                |
| `conditioner_blocks.upsampler.proj_in`                    | `conditioner_blocks.0.cond.model.0`              |
| `...upsampler.upsample_block.{2(s-1)}.resnet_block.d.conv1d_{1,2}` | `...cond.model.s.0.model.d.model.{1,3}` |
| `...upsampler.upsample_block.{2(s-1)+1}`                  | `...cond.model.s.1` (transposed conv)            |
| `vqvae.encoders.L.level_blocks.b.downsample_block.{2s}`   | `encoders.L.level_blocks.b.model.s.0`            |
| `...downsample_block.{2s+1}.resnet_block.d.conv1d_{1,2}`  | `...model.s.1.model.d.model.{1,3}`               |
| `...level_blocks.b.proj_out`                              | `...level_blocks.b.model.{downs_t[b]}`           |
| `vqvae.decoders.L.level_blocks.b.proj_in`                 | `decoders.L.level_blocks.b.model.0`              |
| `...upsample_block.{2(s-1)}.resnet_block...` / `{2(s-1)+1}` | `...model.s.0.model...` / `...model.s.1`       |
| `vqvae.bottleneck.level_blocks.L.codebook`                | `bottleneck.level_blocks.L.k`                    |

The hyper-parameters come from `config.json`, read without transformers (it is not a dependency): `save_pretrained`
writes the nested VQ-VAE config as a diff against the port's defaults, so the port's defaults (4.40.2) are kept
here; and, as `JukeboxModel.set_shared_params` does, the model-level sampling_rate, timing_dims, min/max_duration,
max_nb_genres and metadata_conditioning override each prior's own values. The tensor shapes still decide every
size (an hps value that contradicts them is an error, as for the released files).

Tied weights: an upsampler's output projection shares the input embedding. `.bin` files store both names;
a safetensors file (which cannot hold aliases) may store only one, and the other is then read from it.
The port's `mask` flag is ignored: the released priors are all causal (the original always masks).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch

from openjukebox.checkpoints.format import CONFIG_FILE, model_config_json
from openjukebox.checkpoints.original import (
    _config_from_original,
    is_legacy_torch_file,
    rename_vqvae_key,
    vqvae_from_state,
)
from openjukebox.checkpoints.original_prior import (
    _SAFETENSORS_DTYPES,
    KIND,
    _check_against_model,
    _numel,
    _PageReleaser,
    default_prior_dir,
    prior_config_from_original,
    write_weights_streamed,
)
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import write_json_atomic
from openjukebox.prior.keys import rename_prior_key

log = logging.getLogger(__name__)

MODEL_TYPE = "jukebox"

# Defaults of the port's configs (transformers 4.40.2), for the values `save_pretrained` leaves out.
HF_VQVAE_DEFAULTS: dict[str, Any] = {
    "act_fn": "relu",
    "nb_discrete_codes": 2048,
    "conv_input_shape": 1,
    "conv_res_scale": False,
    "embed_dim": 64,
    "levels": 3,
    "multipliers": [2, 1, 1],
    "res_conv_depth": 4,
    "res_conv_width": 32,
    "res_convolution_multiplier": 1,
    "res_dilation_cycle": None,
    "res_dilation_growth_rate": 3,
    "res_downs_t": [3, 2, 2],
    "res_strides_t": [2, 2, 2],
}
HF_PRIOR_DEFAULTS: dict[str, Any] = {
    "act_fn": "quick_gelu",
    "level": 0,
    "alignment_head": 2,
    "alignment_layer": 68,
    "attention_multiplier": 0.25,
    "attention_pattern": "enc_dec_with_lyrics",
    "attn_res_scale": False,
    "blocks": 64,
    "conv_res_scale": None,
    "num_layers": 72,
    "encoder_config": None,
    "encoder_loss_fraction": 0.4,
    "hidden_size": 2048,
    "init_scale": 0.2,
    "is_encoder_decoder": True,
    "lyric_vocab_size": 80,
    "merged_decoder": True,
    "metadata_dims": [604, 7898],
    "mlp_multiplier": 1.0,
    "music_vocab_size": 2048,
    "n_ctx": 6144,
    "n_heads": 2,
    "nb_relevant_lyric_tokens": 384,
    "res_conv_depth": 3,
    "res_conv_width": 128,
    "res_convolution_multiplier": 1,
    "res_dilation_cycle": None,
    "res_dilation_growth_rate": 1,
    "res_downs_t": [3, 2, 2],
    "res_strides_t": [2, 2, 2],
}
# Model-level values that JukeboxModel copies into every prior config (`set_shared_params`).
HF_SHARED_DEFAULTS: dict[str, Any] = {
    "sampling_rate": 44100,
    "timing_dims": 64,
    "min_duration": 0,
    "max_duration": 600.0,
    "max_nb_genres": 5,
    "metadata_conditioning": True,
}
# The port's attention pattern names -> the original attn_order.
ATTENTION_PATTERNS = {
    "full_dense_attention": 0,
    "raw_column_previous_row_attention": 2,
    "large_separated_enc_dec_w_lyrics": 10,
    "enc_dec_with_lyrics": 12,
}
_V2_LABELS, _V3_LABELS = (120, 4111), (604, 7898)  # (genres, artists) of the official id lists

# --- key names ----------------------------------------------------------------------------------------------------

_WB = {"weight": "w", "bias": "b"}
_PRIOR_KEY_MAP: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"metadata_embedding\.(bow_genre_emb|artist_emb)\.weight"), r"y_emb.\1.emb.weight"),
    (re.compile(r"metadata_embedding\.(total_length_emb|absolute_pos_emb|relative_pos_emb)\.emb\.weight"),
     r"y_emb.\1.emb.weight"),
    (re.compile(r"encoder\.proj_in\.(weight|bias)"), lambda m: f"prime_state_proj.{_WB[m[1]]}"),
    (re.compile(r"encoder\.final_layer_norm\.(weight|bias)"), r"prime_state_ln.\1"),
    (re.compile(r"encoder\.lm_head\.weight"), "prime_x_out.weight"),
    (re.compile(r"(prior|encoder)\.embed_tokens\.weight"), lambda m: f"{_stack(m[1])}.x_emb.weight"),
    (re.compile(r"prior\.fc_proj_out\.weight"), "prior.x_out.weight"),
    (re.compile(r"(prior|encoder)\.(pos_emb\.pos_emb|start_token)"), lambda m: f"{_stack(m[1])}.{m[2]}"),
    (re.compile(r"(prior|encoder)\.transformer\._attn_mods\.(\d+)\.layer_norm_([01])\.(weight|bias)"),
     lambda m: f"{_stack(m[1])}.transformer._attn_mods.{m[2]}.ln_{m[3]}.{m[4]}"),
    (re.compile(r"(prior|encoder)\.transformer\._attn_mods\.(\d+)\.(attn\.c_attn|attn\.c_proj|attn\.c_enc_kv|mlp\.c_fc"
                r"|mlp\.c_proj)\.(weight|bias)"),
     lambda m: f"{_stack(m[1])}.transformer._attn_mods.{m[2]}.{m[3]}.{_WB[m[4]]}"),
    (re.compile(r"conditioner_blocks\.embed_tokens\.weight"), "conditioner_blocks.0.x_emb.weight"),
    (re.compile(r"conditioner_blocks\.layer_norm\.(weight|bias)"), r"conditioner_blocks.0.ln.\1"),
    (re.compile(r"conditioner_blocks\.upsampler\.proj_in\.(weight|bias)"), r"conditioner_blocks.0.cond.model.0.\1"),
    (re.compile(r"conditioner_blocks\.upsampler\.upsample_block\.(\d+)\.resnet_block\.(\d+)\.conv1d_([12])\."
                r"(weight|bias)"),
     lambda m: f"conditioner_blocks.0.cond.model.{_step(m[1], 0)}.0.model.{m[2]}.model.{_conv(m[3])}.{m[4]}"),
    (re.compile(r"conditioner_blocks\.upsampler\.upsample_block\.(\d+)\.(weight|bias)"),
     lambda m: f"conditioner_blocks.0.cond.model.{_step(m[1], 1)}.1.{m[2]}"),
]  # fmt: skip
_VQVAE_KEY_MAP: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"encoders\.(\d+)\.level_blocks\.(\d+)\.downsample_block\.(\d+)\.(weight|bias)"),
     lambda m: f"encoders.{m[1]}.level_blocks.{m[2]}.model.{_half(m[3], 0)}.0.{m[4]}"),
    (re.compile(r"encoders\.(\d+)\.level_blocks\.(\d+)\.downsample_block\.(\d+)\.resnet_block\.(\d+)\.conv1d_([12])\."
                r"(weight|bias)"),
     lambda m: f"encoders.{m[1]}.level_blocks.{m[2]}.model.{_half(m[3], 1)}.1.model.{m[4]}.model.{_conv(m[5])}.{m[6]}"),
    (re.compile(r"decoders\.(\d+)\.level_blocks\.(\d+)\.proj_in\.(weight|bias)"),
     r"decoders.\1.level_blocks.\2.model.0.\3"),
    (re.compile(r"decoders\.(\d+)\.level_blocks\.(\d+)\.upsample_block\.(\d+)\.resnet_block\.(\d+)\.conv1d_([12])\."
                r"(weight|bias)"),
     lambda m: f"decoders.{m[1]}.level_blocks.{m[2]}.model.{_step(m[3], 0)}.0.model.{m[4]}.model.{_conv(m[5])}.{m[6]}"),
    (re.compile(r"decoders\.(\d+)\.level_blocks\.(\d+)\.upsample_block\.(\d+)\.(weight|bias)"),
     lambda m: f"decoders.{m[1]}.level_blocks.{m[2]}.model.{_step(m[3], 1)}.1.{m[4]}"),
    (re.compile(r"decoders\.(\d+)\.out\.(weight|bias)"), r"decoders.\1.out.\2"),
    (re.compile(r"bottleneck\.level_blocks\.(\d+)\.codebook"), r"bottleneck.level_blocks.\1.k"),
]  # fmt: skip
_PROJ_OUT = re.compile(r"encoders\.(\d+)\.level_blocks\.(\d+)\.proj_out\.(weight|bias)")


def _stack(name: str) -> str:
    return "prime_prior" if name == "encoder" else name


def _conv(index: str) -> int:
    return {"1": 1, "2": 3}[index]  # conv1d_1 / conv1d_2 = positions 1 / 3 of the original (ReLU, conv, ReLU, conv)


def _half(index: str, parity: int) -> int:
    """Step of an interleaved [conv, resnet, conv, resnet, ...] list (the port's encoder downsample_block)."""
    if int(index) % 2 != parity:
        raise KeyError(index)
    return int(index) // 2


def _step(index: str, parity: int) -> int:
    """Upsampling step (1-based, as the original's model.{step}) of an interleaved [resnet, conv, ...] list."""
    return _half(index, parity) + 1


def _rename(table: list[tuple[re.Pattern[str], Any]], key: str) -> str | None:
    for pattern, template in table:
        m = pattern.fullmatch(key)
        if m:
            try:
                return template(m) if callable(template) else m.expand(template)
            except KeyError:
                return None
    return None


def hf_prior_key_to_original(key: str) -> str:
    """The released checkpoint's name for a key of the port's `JukeboxPrior` (without its `priors.N.` prefix)."""
    original = _rename(_PRIOR_KEY_MAP, key)
    if original is None:
        raise OpenJukeboxError(f"unknown Hugging Face Jukebox prior key {key!r}")
    return original


def hf_vqvae_keys_to_original(keys: list[str]) -> dict[str, str]:
    """{original key: port key} for the port's `JukeboxVQVAE` keys (without `vqvae.`); unknown keys are an error.

    The encoder's output projection is `model.{downs_t}` in the original, so the number of downsampling steps of
    each encoder block is counted first."""
    steps: dict[tuple[str, str], int] = {}
    for key in keys:
        m = re.fullmatch(r"encoders\.(\d+)\.level_blocks\.(\d+)\.downsample_block\.(\d+)\.weight", key)
        if m and int(m[3]) % 2 == 0:
            steps[(m[1], m[2])] = steps.get((m[1], m[2]), 0) + 1
    out: dict[str, str] = {}
    for key in keys:
        m = _PROJ_OUT.fullmatch(key)
        original = (
            f"encoders.{m[1]}.level_blocks.{m[2]}.model.{steps.get((m[1], m[2]), 0)}.{m[3]}"
            if m
            else _rename(_VQVAE_KEY_MAP, key)
        )
        if original is None:
            raise OpenJukeboxError(f"unknown Hugging Face Jukebox VQ-VAE key {key!r}")
        out[original] = key
    return out


# --- reading the folder ---------------------------------------------------------------------------------------------

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_DTYPES_BY_NAME = {name: dtype for dtype, name in _SAFETENSORS_DTYPES.items()}


def _model_folder(path: Path) -> tuple[Path, Path | None]:
    """(folder with config.json, the weights file the user named or None)."""
    if path.is_dir():
        return path, None
    if path.is_file():
        return path.parent, None if path.name == "config.json" else path
    raise OpenJukeboxError(f"{path}: no such file or folder")


def is_huggingface_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a Hugging Face Jukebox model folder (or a weights, index or config file inside one): its
    config.json says model_type "jukebox". Reads only config.json."""
    path = Path(path)
    if path.is_file() and not path.name.endswith((".bin", ".safetensors", ".index.json", "config.json")):
        return False  # e.g. a released .pth.tar, even one kept beside a Hugging Face folder's files
    folder = path if path.is_dir() else path.parent
    try:
        with open(folder / "config.json") as f:
            return json.load(f).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


class _Weights:
    """The tensors of a (possibly sharded) `.bin` or `.safetensors` checkpoint, read one at a time.

    `.bin` shards are loaded with torch.load(weights_only=True), memory-mapped when in zip format (every file
    `save_pretrained` writes is); safetensors shards are opened with `safe_open` and each tensor is read on demand."""

    def __init__(self, folder: Path, named: Path | None) -> None:
        files = self._files(folder, named)
        self.where: dict[str, Path] = {}
        self._bin: dict[Path, dict[str, torch.Tensor]] = {}
        self._st: dict[Path, Any] = {}
        self._releasers: dict[Path, _PageReleaser] = {}
        for file in files:
            if not file.is_file():
                raise OpenJukeboxError(f"{file}: missing (named by the index of {folder})")
            if file.name.endswith(".safetensors"):
                from safetensors import safe_open

                try:
                    handle = safe_open(str(file), framework="pt")
                except Exception as e:  # safetensors raises its own error types
                    raise OpenJukeboxError(f"{file}: not a safetensors file ({str(e).splitlines()[0]})") from None
                self._st[file] = handle
                keys = list(handle.keys())
            else:
                legacy = is_legacy_torch_file(file)
                try:
                    state = torch.load(file, map_location="cpu", weights_only=True, mmap=not legacy)
                except Exception as e:  # unpickling, zip and I/O errors alike
                    raise OpenJukeboxError(f"{file}: cannot be read ({str(e).splitlines()[0]})") from None
                if not isinstance(state, dict):
                    raise OpenJukeboxError(f"{file}: not a state dict")
                self._bin[file] = state
                if not legacy:
                    self._releasers[file] = _PageReleaser(file)
                keys = list(state)
            for key in keys:
                self.where[key] = file

    @staticmethod
    def _files(folder: Path, named: Path | None) -> list[Path]:
        candidates = [named] if named is not None else [folder / n for n in _WEIGHT_FILES if (folder / n).is_file()]
        if not candidates:
            raise OpenJukeboxError(f"{folder}: no model weights ({', '.join(_WEIGHT_FILES)})")
        first = candidates[0]
        if first.name.endswith(".index.json"):
            try:
                weight_map = json.loads(first.read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise OpenJukeboxError(f"{first}: not a sharded-checkpoint index ({e})") from None
            return [first.parent / name for name in dict.fromkeys(weight_map.values())]
        if not first.name.endswith((".bin", ".safetensors", ".pt", ".pth")):
            raise OpenJukeboxError(f"{first}: not a Hugging Face weights file (.bin, .safetensors or an index json)")
        return [first]

    def names(self) -> list[str]:
        return list(self.where)

    def shape_dtype(self, key: str) -> tuple[tuple[int, ...], torch.dtype]:
        file = self.where[key]
        if file in self._st:
            view = self._st[file].get_slice(key)
            dtype = _DTYPES_BY_NAME.get(view.get_dtype())
            if dtype is None:
                raise OpenJukeboxError(f"{file}: {key} has an unsupported dtype {view.get_dtype()}")
            return tuple(view.get_shape()), dtype
        tensor = self._bin[file][key]
        if not isinstance(tensor, torch.Tensor):
            raise OpenJukeboxError(f"{file}: holds a non-tensor under {key!r}")
        return tuple(tensor.shape), tensor.dtype

    def get(self, key: str) -> torch.Tensor:
        file = self.where[key]
        return self._st[file].get_tensor(key) if file in self._st else self._bin[file][key]

    def release(self, key: str, tensor: torch.Tensor) -> None:
        """Hand a memory-mapped tensor's pages back to the kernel once written (see `_PageReleaser`)."""
        releaser = self._releasers.get(self.where[key])
        if releaser is not None:
            releaser.release(tensor)


# --- configs ----------------------------------------------------------------------------------------------------------


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except OSError:
        raise OpenJukeboxError(f"{path}: missing (a Hugging Face model folder has a config.json)") from None
    except ValueError as e:
        raise OpenJukeboxError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("model_type") != MODEL_TYPE:
        found = config.get("model_type") if isinstance(config, dict) else None
        raise OpenJukeboxError(f"{path}: not a Hugging Face Jukebox model (model_type {found!r}, expected 'jukebox')")
    return config


def _prior_configs(path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each prior's config (port index order: top first) with the port's defaults and the model-level overrides."""
    n = int(config.get("nb_priors", 3))
    listed = config.get("prior_config_list")
    raw = listed if listed is not None else [config.get(f"prior_{i}") for i in range(n)]
    if len(raw) != n or any(not isinstance(c, dict) for c in raw):
        raise OpenJukeboxError(f"{path}: expected {n} prior configs (prior_config_list or prior_0..prior_{n - 1})")
    shared = {k: config.get(k, v) for k, v in HF_SHARED_DEFAULTS.items()}
    return [{**HF_PRIOR_DEFAULTS, **c, **shared} for c in raw]


def _pattern(path: Path, name: str) -> int:
    if name not in ATTENTION_PATTERNS:
        raise OpenJukeboxError(f"{path}: unknown attention_pattern {name!r} ({', '.join(ATTENTION_PATTERNS)})")
    return ATTENTION_PATTERNS[name]


def prior_hps_from_hf(path: Path, c: dict[str, Any], level: int, vqvae: dict[str, Any], levels: int) -> dict[str, Any]:
    """The original hyper-parameters (hps names) of one of the port's prior configs."""
    if c["act_fn"] != "quick_gelu" or c["attn_res_scale"]:
        raise OpenJukeboxError(f"{path}: prior {levels - 1 - level}: act_fn/attn_res_scale differ from Jukebox's")
    if not c.get("mask", True):
        log.info("%s: prior %d has mask=false in config.json; imported as causal (as released)", path, level)
    hps: dict[str, Any] = {
        "level": level,
        "n_ctx": c["n_ctx"],
        "prior_width": c["hidden_size"],
        "prior_depth": c["num_layers"],
        "heads": c["n_heads"],
        "blocks": c["blocks"],
        "attn_order": _pattern(path, c["attention_pattern"]),
        "m_attn": c["attention_multiplier"],
        "m_mlp": c["mlp_multiplier"],
        "init_scale": c["init_scale"],
        "merged_decoder": bool(c["merged_decoder"]),
        "single_enc_dec": bool(c["is_encoder_decoder"]),
        "labels": bool(c["metadata_conditioning"]),
        "y_bins": tuple(c["metadata_dims"]),
        "max_bow_genre_size": c["max_nb_genres"],
        "t_bins": c["timing_dims"],
        "min_duration": c["min_duration"],
        "max_duration": c["max_duration"],
        "alignment_layer": c["alignment_layer"],
        "alignment_head": c["alignment_head"],
        "prime_loss_fraction": c["encoder_loss_fraction"],
        "levels": levels,
        "l_bins": vqvae["nb_discrete_codes"],
        "downs_t": tuple(vqvae["res_downs_t"]),
        "strides_t": tuple(vqvae["res_strides_t"]),
        "sr": c["sampling_rate"],
    }
    if tuple(c["metadata_dims"]) in (_V2_LABELS, _V3_LABELS):
        hps["labels_v3"] = tuple(c["metadata_dims"]) == _V3_LABELS
    if level < levels - 1:  # an upsampler: its conditioner
        hps.update(
            cond_m_conv=c["res_convolution_multiplier"],
            cond_dilation_growth_rate=c["res_dilation_growth_rate"],
            cond_dilation_cycle=c["res_dilation_cycle"],
            cond_res_scale=bool(c["conv_res_scale"]),
        )
    if c["nb_relevant_lyric_tokens"]:
        hps.update(n_tokens=c["nb_relevant_lyric_tokens"], n_vocab=c["lyric_vocab_size"], use_tokens=True)
    else:
        hps["single_enc_dec"] = False
    encoder = c.get("encoder_config")
    if encoder is not None and not c["is_encoder_decoder"] and c["nb_relevant_lyric_tokens"]:
        e = {**HF_PRIOR_DEFAULTS, **encoder}
        hps.update(
            prime_width=e["hidden_size"],
            prime_depth=e["num_layers"],
            prime_heads=e["n_heads"],
            prime_blocks=e["blocks"],
            prime_attn_order=_pattern(path, e["attention_pattern"]),
            prime_init_scale=e["init_scale"],
            prime_m_attn=e["attention_multiplier"],
            prime_m_mlp=e["mlp_multiplier"],
        )
    return hps


# --- the import -------------------------------------------------------------------------------------------------------


def import_huggingface(
    folder_or_file: str | os.PathLike, out_folder: str | os.PathLike | None = None, progress: bool = True
) -> dict[str, Path]:
    """Convert a Hugging Face Jukebox checkpoint into our VQ-VAE folder and one folder per prior.

    Args:
        folder_or_file: the model folder (config.json + pytorch_model.bin / model.safetensors, whole or sharded with
            an index json), or one of its weight files or index.
        out_folder: a model folder to write (`OUT/vqvae`, `OUT/prior_level_{0,1,2}`: what `--model OUT` reads).
            None: where `openjukebox sample --model NAME` finds the released model (`default_vqvae_dir()` and
            `official_prior_dir`, e.g. ~/.openjukebox/models/1b_lyrics/prior_level_2).
        progress: progress bars over the bytes written.
    Returns:
        {"vqvae": folder, "prior_level_2": folder, "prior_level_1": ..., "prior_level_0": ...}.
    """
    if sys.byteorder != "little":
        raise OpenJukeboxError("importing checkpoints needs a little-endian machine")
    folder, named = _model_folder(Path(folder_or_file))
    config = _read_config(folder)
    vqvae_config = {**HF_VQVAE_DEFAULTS, **(config.get("vqvae_config") or {})}
    priors = _prior_configs(folder / "config.json", config)
    levels = len(priors)
    weights = _Weights(folder, named)
    known = ("vqvae.", *(f"priors.{i}." for i in range(levels)))
    stray = [k for k in weights.names() if not k.startswith(known)]
    if stray:
        raise OpenJukeboxError(f"{folder}: not a Jukebox model with {levels} priors (unexpected key {stray[0]!r})")

    out = Path(out_folder) if out_folder is not None else None
    written: dict[str, Path] = {}
    written["vqvae"] = _import_vqvae(folder, weights, vqvae_config, config, out, levels)
    for index, prior in enumerate(priors):
        level = levels - 1 - index  # the port lists the top prior first
        hps = prior_hps_from_hf(folder / "config.json", prior, level, vqvae_config, levels)
        target = None if out is None else out / f"prior_level_{level}"
        written[f"prior_level_{level}"] = _import_prior(folder, weights, f"priors.{index}.", hps, target, progress)
    return written


def _import_vqvae(
    folder: Path,
    weights: _Weights,
    vq: dict[str, Any],
    config: dict[str, Any],
    out: Path | None,
    levels: int,
) -> Path:
    from openjukebox.checkpoints.paths import default_vqvae_dir
    from openjukebox.checkpoints.vqvae import save_vqvae

    where = f"{folder} (vqvae)"
    if vq["act_fn"] != "relu" or vq["conv_res_scale"] or vq["conv_input_shape"] != 1:
        raise OpenJukeboxError(f"{where}: act_fn/conv_res_scale/conv_input_shape differ from Jukebox's mono VQ-VAE")
    keys = [k.removeprefix("vqvae.") for k in weights.names() if k.startswith("vqvae.")]
    if not keys:
        raise OpenJukeboxError(f"{folder}: no vqvae.* weights")
    names = hf_vqvae_keys_to_original(keys)
    original = {key: weights.get("vqvae." + hf) for key, hf in names.items()}
    hps = {
        "sr": config.get("sampling_rate", HF_SHARED_DEFAULTS["sampling_rate"]),
        "strides_t": tuple(vq["res_strides_t"]),
        "dilation_growth_rate": vq["res_dilation_growth_rate"],
        "dilation_cycle": vq["res_dilation_cycle"],
        "vqvae_reverse_decoder_dilation": True,  # the port always reverses the decoder's dilations
    }
    state: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        ours = rename_vqvae_key(key)
        if ours is None:
            raise OpenJukeboxError(f"{where}: no counterpart for {names[key]!r}")
        state[ours] = value.float()
    try:
        vq_config = _config_from_original(hps, original)
    except (KeyError, ValueError, ZeroDivisionError) as e:
        raise OpenJukeboxError(f"{where}: cannot infer the VQ-VAE shape ({e})") from None
    stated = (vq["levels"], tuple(vq["res_downs_t"]), vq["nb_discrete_codes"], vq["embed_dim"])
    found = (vq_config.levels, vq_config.downs_t, vq_config.l_bins, vq_config.emb_width)
    if stated != found or vq_config.levels != levels:
        raise OpenJukeboxError(
            f"{where}: config.json (levels, res_downs_t, nb_discrete_codes, embed_dim)={stated} but the weights have "
            f"{found} and there are {levels} priors"
        )
    model = vqvae_from_state(vq_config, state, where)
    target = out / "vqvae" if out is not None else default_vqvae_dir()
    save_vqvae(target, model)
    log.info("imported the VQ-VAE of %s -> %s", folder, target)
    return target


def _import_prior(
    folder: Path, weights: _Weights, prefix: str, hps: dict[str, Any], out: Path | None, progress: bool
) -> Path:
    """Stream one prior (`priors.N.*`) into our prior folder, as `import_prior` does for a released file."""
    where = folder / prefix.rstrip(".")
    hf_of: dict[str, str] = {}  # original key -> the port's full key
    for key in weights.names():
        if key.startswith(prefix):
            hf_of[hf_prior_key_to_original(key[len(prefix) :])] = key
    # Tied output projection (no merged_decoder): a safetensors file may hold only one of the two names.
    tied = ("prior.x_emb.weight", "prior.x_out.weight")
    if not hps["merged_decoder"]:
        present = [k for k in tied if k in hf_of]
        if len(present) == 1:
            hf_of[tied[1 - tied.index(present[0])]] = hf_of[present[0]]
    shapes = {key: weights.shape_dtype(hf)[0] for key, hf in hf_of.items()}
    config = prior_config_from_original(where, hps, shapes, None)

    ours: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    source: dict[str, tuple[str, bool]] = {}  # our key -> (the port's key, transpose)
    for key, hf in hf_of.items():
        new_key, transpose = rename_prior_key(key)
        shape, dtype = weights.shape_dtype(hf)
        if transpose:
            if len(shape) != 2:
                raise OpenJukeboxError(f"{where}: {hf} should be a 2-d Conv1D weight, has shape {shape}")
            shape = shape[::-1]
        ours[new_key] = (shape, dtype)
        source[new_key] = (hf, transpose)
    _check_against_model(where, config, ours)
    target = out if out is not None else default_prior_dir(config)
    _write_safetensors(
        target, weights, ours, source, {"format": "pt", "source": f"{folder.name}/{prefix.rstrip('.')}"}, progress
    )
    write_json_atomic(target / CONFIG_FILE, model_config_json(KIND, config))
    n = sum(_numel(shape) for shape, _ in ours.values())
    log.info("imported %s: level-%d prior, %.1f M parameters -> %s", where, config.level, n / 1e6, target)
    return target


def _write_safetensors(
    target: Path,
    weights: _Weights,
    ours: dict[str, tuple[tuple[int, ...], torch.dtype]],
    source: dict[str, tuple[str, bool]],
    metadata: dict[str, str],
    progress: bool,
) -> None:
    """model.safetensors of `ours` (our key -> shape, dtype), each tensor read, converted and written in turn."""
    write_weights_streamed(target, ours, source, weights.get, weights.release, metadata, progress, where=str(target))
