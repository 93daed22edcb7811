"""Import of the released prior checkpoints (`prior_level_{0,1,2}.pth.tar` of `5b`, `5b_lyrics`, `1b_lyrics`).

The top priors are 1-5 B parameters (the 5b top file is ~10 GB), so the import streams: the checkpoint is read
with `load_original` (weights_only, memory-mapped for zip-format files), every tensor is renamed
(`rename_prior_key`), transposed where the original `Conv1D` stored (n_in, n_out), and written straight into
`model.safetensors` by our own incremental writer (header with every tensor's offsets first, then the tensors'
bytes one at a time). The whole state dict is never held twice; on Linux the pages of a memory-mapped tensor are
handed back to the kernel once written, so peak memory is a few tensors, not the file. Legacy-format files
(`torch.save` of torch < 1.6, which cannot be memory-mapped) are read whole (1x the file) and each tensor is freed
as soon as it is written: peak memory stays about 1x the file either way.

dtypes: tensors are stored as they are in the file. The 5b and 5b_lyrics tops were saved with `fp16_params`
(every `Conv1D.w` in fp16, the rest fp32); keeping them halves disk and memory. `load_prior` builds an fp32
`Prior` and `load_state_dict` copies (and so upcasts) each tensor into it, which is exactly what the original did
in fp32 (`Conv1D` computes with `w.type_as(x)`).

The config: our `PriorConfig` is built from the checkpoint's `hps` (the original hyper-parameter names) where it
has a value, from the tensor shapes where they determine it (widths, depths, contexts, vocabularies, label
tables), and from the matching official preset (or `preset` when given) otherwise. An hps value that contradicts
the tensor shapes is a one-line error naming the key. The VQ-VAE geometry (levels, downs_t, strides_t, sr) is taken
from hps only if hps describes a VQ-VAE this prior fits (its `l_bins` equal the prior's code bins and it has more
levels than the prior's level), because jukebox let priors be saved without their VQ-VAE's hps (the defaults then
describe a 2-level toy VQ-VAE); otherwise from the preset, which is the released VQ-VAE's.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import os
import pickletools
import re
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from openjukebox.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE, model_config_json
from openjukebox.checkpoints.original import is_legacy_torch_file, load_original
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import atomic_path, write_json_atomic
from openjukebox.prior import Prior, PriorConfig, prior_preset
from openjukebox.prior.config import (
    OFFICIAL_PRESETS,
    ConditionerConfig,
    LabelConfig,
    LyricsConfig,
    LyricsEncoderConfig,
)
from openjukebox.prior.keys import rename_prior_key

log = logging.getLogger(__name__)

KIND = "prior"

# --- what a file holds ------------------------------------------------------------------------------------------


def _pickled_strings(path: Path) -> set[str]:
    """Every string constant of a torch.save file's pickle, read with `pickletools.genops` (which decodes opcodes
    and never builds an object or imports anything), without reading any tensor data."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                stream, count = io.BytesIO(archive.read(pickles[0]) if pickles else b""), 1
        except (zipfile.BadZipFile, OSError):
            return set()
    elif is_legacy_torch_file(path):
        stream, count = open(path, "rb"), 4  # noqa: SIM115 (closed below); magic, protocol, system info, object
    else:
        return set()
    strings: set[str] = set()
    with stream, contextlib.suppress(ValueError, EOFError):  # a damaged pickle: keep what was read
        for _ in range(count):
            strings.update(arg for _, arg, _ in pickletools.genops(stream) if isinstance(arg, str))
    return strings


def original_kind(path: str | os.PathLike) -> str:
    """What a released Jukebox `.pth.tar` holds, "vqvae" or "prior", from its parameter names only (no tensor is
    read, nothing is unpickled); OpenJukeboxError if it is neither."""
    path = Path(path)
    if not path.is_file():
        raise OpenJukeboxError(f"{path}: no such file")
    keys = {s.removeprefix("module.") for s in _pickled_strings(path)}
    if any(k.startswith(("bottleneck.level_blocks.", "encoders.0.level_blocks.")) for k in keys):
        return "vqvae"
    if any(k.startswith(("prior.transformer._attn_mods.", "prior.x_emb.")) for k in keys):
        return "prior"
    # Not recognisable by names: let the loader say why (not a checkpoint, damaged, refused, ...).
    load_original(path)
    raise OpenJukeboxError(f"{path}: neither a Jukebox VQ-VAE nor a Jukebox prior checkpoint")


# --- config from hps and shapes -----------------------------------------------------------------------------------


class _Resolver:
    """Picks each config value: hps (checked against the shape that fixes it), else the shape, else the preset."""

    def __init__(self, path: Path, hps: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
        self.path, self.hps, self.shapes = path, hps, shapes

    def has(self, name: str) -> bool:
        return self.hps.get(name) is not None

    def get(self, name: str, fallback: Any, shape_value: Any = None, tensor: str | None = None) -> Any:
        if self.has(name):
            value = self.hps[name]
            if shape_value is not None and _normalise(value) != _normalise(shape_value):
                shape = f" of shape {self.shapes[tensor]}" if tensor in self.shapes else ""
                raise OpenJukeboxError(
                    f"{self.path}: hps {name}={value!r} contradicts the weights, which have {name}={shape_value!r} "
                    f"({tensor}{shape})"
                )
            return value
        return fallback if shape_value is None else shape_value


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _depth(shapes: dict[str, tuple[int, ...]], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"transformer\._attn_mods\.(\d+)\.")
    found = [int(m[1]) for k in shapes if (m := pattern.match(k))]
    return 1 + max(found) if found else 0


def _match_preset(path: Path, hps: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> str:
    """The official preset a checkpoint most likely is (used only for values neither hps nor shapes give)."""
    if "conditioner_blocks.0.x_emb.weight" in shapes:
        level = hps.get("level")
        if level is None and (m := re.search(r"prior_level_([01])", path.name)):
            level = int(m[1])
        if level not in (0, 1):
            raise OpenJukeboxError(
                f"{path}: an upsampler, but its level is unknown (no hps 'level'); "
                "pass --preset upsampler_level_0 or upsampler_level_1"
            )
        return f"upsampler_level_{level}"
    if "prime_prior.x_emb.weight" in shapes:
        return "5b_lyrics"
    rows = shapes.get("prior.x_emb.weight", (2048,))[0]
    merged = hps.get("single_enc_dec")
    if merged is None:
        merged = rows & (rows - 1) != 0  # code bins are a power of two; merged adds the lyric vocabulary
    return "1b_lyrics" if merged else "5b"


def prior_config_from_original(
    path: str | os.PathLike, hps: dict[str, Any], shapes: dict[str, tuple[int, ...]], preset: str | None = None
) -> PriorConfig:
    """Our PriorConfig for an original checkpoint from its hps and tensor shapes (original key names)."""
    path = Path(path)
    shapes = {k.removeprefix("module."): v for k, v in shapes.items()}
    if "prior.x_emb.weight" not in shapes or "prior.pos_emb.pos_emb" not in shapes:
        raise OpenJukeboxError(f"{path}: not a Jukebox prior checkpoint (no prior.x_emb / prior.pos_emb weights)")
    if preset is not None and preset not in OFFICIAL_PRESETS:
        raise OpenJukeboxError(f"--preset {preset!r}: not an official prior preset ({', '.join(OFFICIAL_PRESETS)})")
    try:
        return _config_from_original(path, hps, shapes, preset)
    except (ValueError, TypeError, KeyError, ZeroDivisionError) as e:
        raise OpenJukeboxError(f"{path}: the hyper-parameters do not describe a valid prior ({e})") from None


def _config_from_original(
    path: Path, hps: dict[str, Any], shapes: dict[str, tuple[int, ...]], preset: str | None
) -> PriorConfig:
    base = prior_preset(preset or _match_preset(path, hps, shapes))
    r = _Resolver(path, hps, shapes)
    x_emb, pos_emb = shapes["prior.x_emb.weight"], shapes["prior.pos_emb.pos_emb"]
    is_top = "conditioner_blocks.0.x_emb.weight" not in shapes
    level = r.get("level", base.level)
    if preset is not None and level != base.level:
        raise OpenJukeboxError(f"{path}: hps level={level} but preset {preset!r} is a level-{base.level} prior")

    width = r.get("prior_width", None, x_emb[1], "prior.x_emb.weight")
    depth = r.get("prior_depth", None, _depth(shapes, "prior."), "prior.transformer._attn_mods.*")
    layer0 = "prior.transformer._attn_mods.0."
    m_attn = r.get("m_attn", base.m_attn, shapes[layer0 + "attn.c_proj.w"][0] / width, layer0 + "attn.c_proj.w")
    m_mlp = r.get("m_mlp", base.m_mlp, shapes[layer0 + "mlp.c_fc.w"][1] / width, layer0 + "mlp.c_fc.w")

    # Lyrics: a separate encoder (prime_prior.*) or merged into one sequence (single_enc_dec).
    lyrics = None
    base_lyrics = base.lyrics
    has_encoder = "prime_prior.x_emb.weight" in shapes
    merged = bool(r.get("single_enc_dec", base.merged)) and not has_encoder
    use_tokens = r.get("use_tokens", has_encoder or merged)
    if use_tokens and not (has_encoder or merged):
        raise OpenJukeboxError(f"{path}: hps use_tokens=True but the weights have no lyrics encoder (prime_prior.*)")
    n_ctx_fallback = base.n_ctx
    if merged and not r.has("n_ctx"):  # positions = n_tokens + n_ctx: split them with the lyric window we know
        n_ctx_fallback = pos_emb[0] - r.get("n_tokens", base_lyrics.n_tokens if base_lyrics else 0)
    n_ctx = r.get("n_ctx", n_ctx_fallback, None if merged else pos_emb[0], "prior.pos_emb.pos_emb")
    if not 0 < n_ctx < pos_emb[0] + (not merged):
        hint = "" if r.has("n_ctx") else " (hps has no n_ctx: pass the matching --preset)"
        raise OpenJukeboxError(
            f"{path}: prior.pos_emb.pos_emb has {pos_emb[0]} positions, too few for n_ctx={n_ctx} music tokens "
            f"and the lyric window{hint}"
        )
    if has_encoder:
        enc_x, enc_pos = shapes["prime_prior.x_emb.weight"], shapes["prime_prior.pos_emb.pos_emb"]
        n_vocab = r.get("n_vocab", None, enc_x[0], "prime_prior.x_emb.weight")
        n_tokens = r.get("n_tokens", None, enc_pos[0], "prime_prior.pos_emb.pos_emb")
        bins = x_emb[0]
        base_enc = base_lyrics.encoder if base_lyrics is not None and base_lyrics.encoder else LyricsEncoderConfig()
        enc_width = r.get("prime_width", None, enc_x[1], "prime_prior.x_emb.weight")
        enc0 = "prime_prior.transformer._attn_mods.0."
        encoder = LyricsEncoderConfig(
            width=enc_width,
            depth=r.get("prime_depth", None, _depth(shapes, "prime_prior."), "prime_prior.transformer._attn_mods.*"),
            heads=r.get("prime_heads", base_enc.heads),
            attn_order=r.get("prime_attn_order", base_enc.attn_order),
            blocks=r.get("prime_blocks", base_enc.blocks),
            init_scale=r.get("prime_init_scale", base_enc.init_scale),
            m_attn=r.get("prime_m_attn", None, shapes[enc0 + "attn.c_proj.w"][0] / enc_width, enc0 + "attn.c_proj.w"),
            m_mlp=r.get("prime_m_mlp", None, shapes[enc0 + "mlp.c_fc.w"][1] / enc_width, enc0 + "mlp.c_fc.w"),
        )
    elif merged:
        n_vocab = r.get("n_vocab", base_lyrics.n_vocab if base_lyrics else 79)
        bins = x_emb[0] - n_vocab
        n_tokens = r.get("n_tokens", None, pos_emb[0] - n_ctx, "prior.pos_emb.pos_emb")
        encoder = None
    else:
        bins = x_emb[0]
    if has_encoder or merged:
        same_mode = base_lyrics is not None and base_lyrics.mode == ("encoder" if has_encoder else "merged")
        lyrics = LyricsConfig(
            mode="encoder" if has_encoder else "merged",
            n_tokens=n_tokens,
            n_vocab=n_vocab,
            loss_fraction=r.get("prime_loss_fraction", base_lyrics.loss_fraction if base_lyrics else 0.4),
            encoder=encoder,
            alignment_layer=r.get("alignment_layer", base_lyrics.alignment_layer if same_mode else None),
            alignment_head=r.get("alignment_head", base_lyrics.alignment_head if same_mode else None),
        )

    # Labels: artist/genre tables always, timing tables at the top level only.
    labels = None
    has_labels = "y_emb.artist_emb.emb.weight" in shapes
    if bool(r.get("labels", has_labels)) != has_labels:
        raise OpenJukeboxError(f"{path}: hps labels={hps.get('labels')!r} contradicts the weights (y_emb.* tables)")
    if has_labels:
        base_labels = base.labels or LabelConfig(artist_bins=1, genre_bins=1)
        genre_rows, artist_rows = shapes["y_emb.bow_genre_emb.emb.weight"][0], shapes["y_emb.artist_emb.emb.weight"][0]
        genre_bins, artist_bins = r.get("y_bins", None, (genre_rows, artist_rows), "y_emb.*_emb.emb.weight")
        timing = "y_emb.total_length_emb.emb.weight" in shapes
        t_rows = shapes["y_emb.total_length_emb.emb.weight"][0] if timing else None
        min_duration = r.get("min_duration", base_labels.min_duration) if timing else None
        max_duration = r.get("max_duration", base_labels.max_duration) if timing else None
        if timing and (min_duration is None or max_duration is None):
            min_duration, max_duration = base_labels.min_duration or 0.0, base_labels.max_duration or 600.0
        labels = LabelConfig(
            artist_bins=int(artist_bins),
            genre_bins=int(genre_bins),
            max_bow_genre_size=r.get("max_bow_genre_size", base_labels.max_bow_genre_size),
            t_bins=r.get("t_bins", base_labels.t_bins, t_rows, "y_emb.total_length_emb.emb.weight"),
            min_duration=None if min_duration is None else float(min_duration),
            max_duration=None if max_duration is None else float(max_duration),
            ids="v3" if r.get("labels_v3", base_labels.ids == "v3") else "v2",
        )

    conditioner = None
    if not is_top:
        base_cond = base.conditioner or ConditionerConfig()
        proj = "conditioner_blocks.0.cond.model.0.weight"
        res = re.compile(r"conditioner_blocks\.0\.cond\.model\.1\.0\.(?:blocks|model)\.(\d+)\.model\.1\.weight")
        res_keys = [k for k in shapes if res.fullmatch(k)]
        cond_width = r.get("cond_width", None, shapes[proj][0], proj)
        conditioner = ConditionerConfig(
            width=cond_width,
            depth=r.get("cond_depth", None, len(res_keys), "conditioner_blocks.0.cond.model.1.0.*"),
            m_conv=r.get(
                "cond_m_conv",
                base_cond.m_conv,
                shapes[res_keys[0]][0] / cond_width if res_keys else None,
                res_keys[0] if res_keys else None,
            ),
            dilation_growth_rate=r.get("cond_dilation_growth_rate", base_cond.dilation_growth_rate),
            dilation_cycle=r.get("cond_dilation_cycle", base_cond.dilation_cycle),
            res_scale=bool(r.get("cond_res_scale", base_cond.res_scale)),
        )

    # VQ-VAE geometry: from hps only when it describes a VQ-VAE this prior fits (see the module docstring).
    geometry = dict(levels=base.levels, downs_t=base.downs_t, strides_t=base.strides_t, sample_rate=base.sample_rate)
    if r.has("levels") and r.has("l_bins") and hps["l_bins"] == bins and hps["levels"] > level:
        geometry = dict(
            levels=int(hps["levels"]),
            downs_t=tuple(hps.get("downs_t", base.downs_t)),
            strides_t=tuple(hps.get("strides_t", base.strides_t)),
            sample_rate=int(hps.get("sr", base.sample_rate)),
        )
    config = PriorConfig(
        level=int(level),
        n_ctx=int(n_ctx),
        width=int(width),
        depth=int(depth),
        heads=int(r.get("heads", base.heads)),
        attn_order=int(r.get("attn_order", base.attn_order)),
        blocks=r.get("blocks", base.blocks),
        init_scale=float(r.get("init_scale", base.init_scale)),
        m_attn=float(m_attn),
        m_mlp=float(m_mlp),
        merged_decoder=bool(r.get("merged_decoder", base.merged_decoder)),
        bins=int(bins),
        labels=labels,
        lyrics=lyrics,
        conditioner=conditioner,
        **geometry,
    )
    if config.is_top != is_top:
        where = "has" if not is_top else "lacks"
        raise OpenJukeboxError(f"{path}: a level-{level} prior of {config.levels} levels that {where} an upsampler")
    return config


def _check_against_model(path: Path, config: PriorConfig, ours: dict[str, tuple[tuple[int, ...], torch.dtype]]):
    """Every key and shape a `Prior(config)` has (built on the meta device: no memory), and nothing else."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Prior(config).state_dict().items()}
    missing = [k for k in expected if k not in ours]
    extra = [k for k in ours if k not in expected]
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise OpenJukeboxError(
            f"{path}: the weights do not match the config ({len(missing)} missing, {len(extra)} unexpected; {what})"
        )
    for key, shape in expected.items():
        if ours[key][0] != shape:
            raise OpenJukeboxError(f"{path}: {key} has shape {ours[key][0]}, the config expects {shape}")


# --- streaming safetensors writer ---------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def safetensors_header(entries: list[tuple[str, tuple[int, ...], torch.dtype]], metadata: dict[str, str]) -> bytes:
    """The 8-byte little-endian length and the JSON header of a safetensors file whose tensors follow in the order
    of `entries`, back to back (the format: https://huggingface.co/docs/safetensors). Padded with spaces to a
    multiple of 8 bytes so that every tensor is aligned when entries are ordered by decreasing element size."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, shape, dtype in entries:
        if dtype not in _SAFETENSORS_DTYPES:
            raise OpenJukeboxError(f"{name}: dtype {dtype} cannot be stored in safetensors")
        nbytes = dtype.itemsize * _numel(shape)
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes in row-major order (little-endian, as safetensors wants), without a copy if contiguous."""
    flat = tensor.contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


class _PageReleaser:
    """Hands the pages of memory-mapped checkpoint tensors back to the kernel once they are written (Linux only).

    `torch.load(mmap=True)` maps the file privately; the pages of a read tensor stay resident (counted in RSS) until
    the mapping goes, which is after the last tensor. `madvise(MADV_DONTNEED)` drops them early; for a clean file
    mapping it is harmless (a later read would fetch the bytes from the file again). It is only ever applied inside
    the address ranges /proc/self/maps lists for the checkpoint file itself, never to other memory.
    """

    MADV_DONTNEED = 4

    def __init__(self, path: Path) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.madvise: Callable[..., int] | None = None
        self.page = 4096
        if sys.platform != "linux":
            return
        with contextlib.suppress(OSError, AttributeError, ValueError):
            inode, name = os.stat(path).st_ino, str(path.resolve())
            with open("/proc/self/maps") as f:
                for line in f:
                    parts = line.split(maxsplit=5)
                    if len(parts) == 6 and int(parts[4]) == inode and parts[5].rstrip("\n") == name:
                        start, end = (int(x, 16) for x in parts[0].split("-"))
                        self.ranges.append((start, end))
            self.page = os.sysconf("SC_PAGE_SIZE")
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self.madvise = libc.madvise

    def release(self, tensor: torch.Tensor) -> None:
        if self.madvise is None or not tensor.numel():
            return
        page = self.page
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        for lo, hi in self.ranges:
            if lo <= start < hi:
                a, b = max(lo, start - start % page), min(hi, end + (-end % page))
                self.madvise(a, b - a, self.MADV_DONTNEED)
                return


# --- the import -----------------------------------------------------------------------------------------------


def import_prior(
    path: str | os.PathLike, out_folder: str | os.PathLike | None, preset: str | None = None, progress: bool = True
) -> Path:
    """Convert a released `prior_level_{0,1,2}.pth.tar` into our prior folder (config.json + model.safetensors).

    Args:
        path: the released file (read with torch.load(weights_only=True); memory-mapped when in zip format).
        out_folder: where to write; created if needed. model.safetensors is written first (atomically), config.json
            last, so a folder with a config.json always has its weights. None: where `openjukebox sample` looks for
            the released model's prior of that level (`official_prior_dir`, e.g. ~/.openjukebox/models/5b_lyrics/
            prior_level_2).
        preset: official preset for values neither hps nor shapes give (default: the one the file looks like).
        progress: show a progress bar over the bytes written.
    Returns:
        the folder written.
    """
    path = Path(path)
    if sys.byteorder != "little":
        raise OpenJukeboxError("importing checkpoints needs a little-endian machine")
    data = load_original(path)
    state: dict[str, torch.Tensor] = data["model"]
    if any(k.removeprefix("module.").startswith(("bottleneck.", "encoders.", "decoders.")) for k in state):
        raise OpenJukeboxError(f"{path}: a VQ-VAE checkpoint, not a prior")
    hps = dict(data.get("hps") or {})
    step = data.get("step")
    del data  # `state` is now the only holder of the tensors: popping an entry frees it (legacy format)

    ours: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    source: dict[str, tuple[str, bool]] = {}  # our key -> (original key, transpose)
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise OpenJukeboxError(f"{path}: 'model' holds a non-tensor under {key!r}")
        try:
            new_key, transpose = rename_prior_key(key)
        except OpenJukeboxError as e:
            raise OpenJukeboxError(f"{path}: not a Jukebox prior checkpoint ({e})") from None
        if new_key in ours:
            raise OpenJukeboxError(f"{path}: two keys map to {new_key!r} (second: {key!r})")
        shape = tuple(tensor.shape)
        if transpose:
            if tensor.dim() != 2:
                raise OpenJukeboxError(f"{path}: {key} should be a 2-d Conv1D weight, has shape {shape}")
            shape = shape[::-1]
        ours[new_key] = (shape, tensor.dtype)
        source[new_key] = (key, transpose)
    config = prior_config_from_original(path, hps, {k: tuple(v.shape) for k, v in state.items()}, preset)
    _check_against_model(path, config, ours)

    releaser = _PageReleaser(path)
    folder = Path(out_folder) if out_folder is not None else default_prior_dir(config)

    def fetch(key: str) -> torch.Tensor:
        return state.pop(key)

    write_weights_streamed(
        folder,
        ours,
        source,
        fetch,
        lambda key, tensor: releaser.release(tensor),
        {"format": "pt", "source": path.name, "step": str(step)},
        progress,
        where=str(path),
    )
    write_json_atomic(folder / CONFIG_FILE, model_config_json(KIND, config))
    n = sum(_numel(shape) for shape, _ in ours.values())
    log.info("imported %s: level-%d prior, %.1f M parameters -> %s", path.name, config.level, n / 1e6, folder)
    return folder


def write_weights_streamed(
    folder: Path,
    ours: dict[str, tuple[tuple[int, ...], torch.dtype]],
    source: dict[str, tuple[str, bool]],
    fetch: Callable[[str], torch.Tensor],
    release: Callable[[str, torch.Tensor], None],
    metadata: dict[str, str],
    progress: bool,
    where: str,
) -> None:
    """Write `folder/model.safetensors` one tensor at a time: `ours` gives each of our keys' shape and dtype,
    `source` the checkpoint key it comes from and whether to transpose it (a Conv1D weight); `fetch` reads a
    checkpoint tensor and `release` is told when it has been written (to free it). The header comes first, so the
    state dict is never held twice. Any config.json of an earlier import is removed before the weights land, so
    that no moment pairs new weights with an old config; the caller writes the new one."""
    from tqdm import tqdm

    # Largest element size first keeps every tensor aligned to its dtype in the file (as safetensors itself does).
    order = sorted(ours, key=lambda k: -ours[k][1].itemsize)
    header = safetensors_header([(k, *ours[k]) for k in order], metadata)
    total = sum(_numel(shape) * dtype.itemsize for shape, dtype in ours.values())
    folder.mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(folder / WEIGHTS_FILE) as tmp,
        open(tmp, "wb") as f,
        tqdm(total=total, unit="B", unit_scale=True, desc=f"import {metadata['source']}", disable=not progress) as bar,
    ):
        f.write(header)
        for k in order:
            original_key, transpose = source[k]
            tensor = fetch(original_key)
            view = _raw_bytes(tensor.t().contiguous() if transpose else tensor)
            f.write(view)
            bar.update(view.nbytes)
            del view
            release(original_key, tensor)
            del tensor
        if f.tell() != len(header) + total:
            raise OpenJukeboxError(f"{where}: wrote {f.tell()} bytes, expected {len(header) + total}")
        (folder / CONFIG_FILE).unlink(missing_ok=True)


def official_model_name(config: PriorConfig) -> str:
    """The released model a prior belongs to: its top prior's name, or "5b" for the upsamplers (released once)."""
    if not config.is_top or config.lyrics is None:
        return "5b"
    return "5b_lyrics" if config.lyrics.mode == "encoder" else "1b_lyrics"


def default_prior_dir(config: PriorConfig) -> Path:
    """Where `openjukebox import` puts a released prior by default (where sampling looks for it)."""
    from openjukebox.checkpoints.hierarchy import official_prior_dir

    return official_prior_dir(official_model_name(config), config.level)
