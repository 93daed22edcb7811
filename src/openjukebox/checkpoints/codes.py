"""Versioned codes files (`.npz`): the VQ-VAE codes of one piece of audio at one or more levels.

Arrays: `z{level}` (N, L) int16/int32 for each stored level. Metadata (JSON string `meta`): format name and
version, sample rate, hop lengths, codebook size, the audio length in samples before padding, and where the
codes came from. `load_codes` checks the format; `check_compatible` checks a VQ-VAE can decode them.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import atomic_path

FORMAT = "openjukebox-codes"
VERSION = 1


@dataclass
class CodesFile:
    zs: dict[int, np.ndarray]  # level -> (N, L) codes
    sample_rate: int
    hop_lengths: tuple[int, ...]
    l_bins: int
    length: int  # audio samples before padding to the top hop
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. source file, VQ-VAE folder

    def check_compatible(self, hop_lengths: tuple[int, ...], l_bins: int, sample_rate: int, where: str) -> None:
        if tuple(hop_lengths) != tuple(self.hop_lengths) or l_bins != self.l_bins or sample_rate != self.sample_rate:
            raise OpenJukeboxError(
                f"{where}: codes were made by a VQ-VAE with hops {list(self.hop_lengths)}, {self.l_bins} codes at "
                f"{self.sample_rate} Hz; this one has hops {list(hop_lengths)}, {l_bins} codes at {sample_rate} Hz"
            )


def save_codes(path: str | os.PathLike, codes: CodesFile, compress: bool = True) -> None:
    """Write `codes` atomically; compress=False writes a plain (larger, ~100x faster) archive, as for the state a
    sampling run saves after every window."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "sample_rate": codes.sample_rate,
        "hop_lengths": list(codes.hop_lengths),
        "l_bins": codes.l_bins,
        "length": codes.length,
        "levels": sorted(codes.zs),
        **({"extra": codes.extra} if codes.extra else {}),
    }
    dtype = np.int16 if codes.l_bins <= np.iinfo(np.int16).max else np.int32
    arrays = {f"z{level}": np.asarray(z).astype(dtype) for level, z in codes.zs.items()}
    with atomic_path(Path(path).with_suffix(".npz")) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, meta=np.array(json.dumps(meta)), **arrays)


def load_codes(path: str | os.PathLike) -> CodesFile:
    path = Path(path)
    if not path.is_file():
        raise OpenJukeboxError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise OpenJukeboxError(f"{path}: not a codes file (expected an .npz written by `openjukebox encode`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise OpenJukeboxError(f"{path}: not an openjukebox codes file")
            if meta.get("version") != VERSION:
                raise OpenJukeboxError(f"{path}: codes format version {meta.get('version')} is not {VERSION}")
            zs = {int(level): data[f"z{level}"].astype(np.int64) for level in meta["levels"]}
    except OpenJukeboxError:
        raise
    except (KeyError, ValueError, json.JSONDecodeError, zipfile.BadZipFile) as e:
        raise OpenJukeboxError(f"{path}: damaged codes file ({e})") from None
    return CodesFile(
        zs=zs,
        sample_rate=int(meta["sample_rate"]),
        hop_lengths=tuple(meta["hop_lengths"]),
        l_bins=int(meta["l_bins"]),
        length=int(meta["length"]),
        extra=meta.get("extra", {}),
    )
