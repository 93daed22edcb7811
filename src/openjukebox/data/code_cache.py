"""A cache of VQ-VAE codes for every song of an index, so that prior training reads codes, not audio.

Layout (CACHE_DIR defaults to `DIR/.openjukebox-codes`):

    CACHE_DIR/<fingerprint>/vqvae.json                        the VQ-VAE: folder, hops, l_bins, sample rate
    CACHE_DIR/<fingerprint>/<hash[:2]>/<content_hash>.npz      codes of one song, all levels (`save_codes`)

`fingerprint` is a short sha256 of the VQ-VAE's config.json and model.safetensors bytes, so codes from
different VQ-VAEs never mix. Songs are keyed by the content hash recorded in the index; each codes file is
written atomically, so `encode_songs` can be killed and re-run: songs with a loadable cache file are skipped.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from openjukebox.checkpoints.codes import CodesFile, load_codes, save_codes
from openjukebox.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import read_json_object, write_json_atomic

DEFAULT_CACHE_NAME = ".openjukebox-codes"
VQVAE_INFO_FILE = "vqvae.json"
FINGERPRINT_CHARS = 16


def vqvae_fingerprint(folder: str | os.PathLike) -> str:
    """Short sha256 of a VQ-VAE checkpoint folder's config.json and model.safetensors contents."""
    folder = Path(folder)
    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = folder / name
        if not path.is_file():
            raise OpenJukeboxError(f"{folder}: not a VQ-VAE checkpoint folder ({name} missing)")
        h.update(name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:FINGERPRINT_CHARS]


class CodeCache:
    """Read (and write) access to the codes of one VQ-VAE in a cache folder."""

    def __init__(self, cache_dir: str | os.PathLike, fingerprint: str):
        self.cache_dir = Path(cache_dir)
        self.fingerprint = fingerprint
        self.folder = self.cache_dir / fingerprint

    def path(self, content_hash: str) -> Path:
        if not content_hash or len(content_hash) < 3 or "/" in content_hash or "\\" in content_hash:
            raise OpenJukeboxError(f"invalid content hash {content_hash!r}")
        return self.folder / content_hash[:2] / f"{content_hash}.npz"

    def get(self, content_hash: str) -> CodesFile | None:
        """The cached codes of the song with this content hash, or None if absent or unreadable."""
        path = self.path(content_hash)
        if not path.is_file():
            return None
        try:
            return load_codes(path)
        except OpenJukeboxError:
            return None

    def put(self, content_hash: str, codes: CodesFile) -> Path:
        path = self.path(content_hash)
        save_codes(path, codes)  # atomic
        return path

    def __contains__(self, content_hash: object) -> bool:
        return isinstance(content_hash, str) and self.get(content_hash) is not None

    def info(self) -> dict:
        """The contents of vqvae.json (raises OpenJukeboxError if missing)."""
        return read_json_object(self.folder / VQVAE_INFO_FILE)


def open_code_cache(dir_or_cache: str | os.PathLike, vqvae_folder: str | os.PathLike) -> CodeCache:
    """The code cache of `vqvae_folder`, given a dataset folder (its default cache) or a cache folder.

    A folder that holds the default cache subfolder or a song index is taken as a dataset folder.
    """
    from openjukebox.data.index import DEFAULT_DB_NAME

    p = Path(dir_or_cache)
    is_dataset = (p / DEFAULT_CACHE_NAME).is_dir() or (p / DEFAULT_DB_NAME).is_file()
    cache_dir = p / DEFAULT_CACHE_NAME if is_dataset else p
    return CodeCache(cache_dir, vqvae_fingerprint(vqvae_folder))


@dataclass
class EncodeSummary:
    cache_folder: Path
    encoded: int = 0
    cached: int = 0  # skipped: a loadable cache file existed
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    audio_seconds: float = 0.0  # of audio encoded in this run
    elapsed_s: float = 0.0

    def format(self) -> str:
        rate = self.audio_seconds / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            f"codes cache: {self.cache_folder}",
            f"encoded {self.encoded}, skipped (cached) {self.cached}, failed {len(self.failed)}",
        ]
        if self.encoded:
            lines.append(f"{self.audio_seconds:.1f} s of audio in {self.elapsed_s:.1f} s ({rate:.1f} s audio/s)")
        lines += [f"  failed: {rel}: {reason}" for rel, reason in self.failed]
        return "\n".join(lines)


def _changed_reason(path: Path, song) -> str | None:
    """Why `path` no longer matches its index record, or None if it does."""
    from openjukebox.data.index import file_sha256

    try:
        st = path.stat()
    except FileNotFoundError:
        return "file missing (deleted since indexing); re-run `openjukebox data index`"
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    if st.st_size == song.size and st.st_mtime_ns == song.mtime_ns:
        return None
    try:
        same = file_sha256(path) == song.content_hash
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    return None if same else "file changed since indexing; re-run `openjukebox data index`"


def encode_songs(
    dataset_dir: str | os.PathLike,
    vqvae_folder: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    chunk_seconds: float | None = 30.0,
    progress: bool = True,
) -> EncodeSummary:
    """Encode every 'ok' song of the index of `dataset_dir` at all levels into the code cache.

    Songs already cached are skipped; songs that cannot be read are recorded as failed and skipped.
    `device` defaults to CUDA when available.
    """
    import torch
    from tqdm import tqdm

    from openjukebox.audio import load_audio
    from openjukebox.checkpoints.vqvae import load_vqvae
    from openjukebox.data.index import open_index

    dataset_dir = Path(dataset_dir)
    vqvae_folder = Path(vqvae_folder)
    cache_dir = Path(cache_dir) if cache_dir is not None else dataset_dir / DEFAULT_CACHE_NAME
    with open_index(dataset_dir) as index:
        root = index.root
        songs = index.songs("ok")

    cache = CodeCache(cache_dir, vqvae_fingerprint(vqvae_folder))
    summary = EncodeSummary(cache.folder)
    todo = []
    queued: set[str] = set()
    for song in songs:
        if not song.content_hash:
            summary.failed.append((song.path, "no content hash in the index"))
        elif song.content_hash in queued or song.content_hash in cache:
            summary.cached += 1  # already cached, or a duplicate of a song queued here (same bytes, same codes)
        else:
            queued.add(song.content_hash)
            todo.append(song)
    if not todo:
        return summary

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_vqvae(vqvae_folder).to(device)
    sr = model.config.sample_rate
    hops = tuple(model.hop_lengths)
    l_bins = model.config.l_bins
    write_json_atomic(
        cache.folder / VQVAE_INFO_FILE,
        {
            "fingerprint": cache.fingerprint,
            "vqvae_folder": str(vqvae_folder.resolve()),
            "hop_lengths": list(hops),
            "l_bins": l_bins,
            "sample_rate": sr,
            "levels": len(hops),
        },
    )

    start = time.perf_counter()
    bar = tqdm(todo, desc="encoding", unit="song", disable=not progress, file=sys.stderr)
    for song in bar:
        path = root / song.path
        reason = _changed_reason(path, song)
        if reason is None:
            try:
                audio = load_audio(path, sr, min_samples=hops[-1])
            except OpenJukeboxError as e:
                reason = str(e)
            except (OSError, RuntimeError, ValueError) as e:
                reason = f"cannot decode ({e})"
        if reason is not None:
            summary.failed.append((song.path, reason))
            continue
        with torch.inference_mode():
            zs = model.encode(torch.from_numpy(audio)[None].to(device), chunk_seconds=chunk_seconds)
        codes = CodesFile(
            zs={level: z.cpu().numpy() for level, z in enumerate(zs)},
            sample_rate=sr,
            hop_lengths=hops,
            l_bins=l_bins,
            length=len(audio),
            extra={"path": song.path},
        )
        cache.put(song.content_hash, codes)
        summary.encoded += 1
        summary.audio_seconds += len(audio) / sr
        elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"{summary.audio_seconds / max(elapsed, 1e-9):.1f} s audio/s")
    bar.close()
    summary.elapsed_s = time.perf_counter() - start
    return summary


def encode_cli(args) -> None:
    """`openjukebox data encode DIR --vqvae CKPT [--cache CACHE_DIR]`: args.dir, args.vqvae, args.cache (Path|None)."""
    summary = encode_songs(args.dir, args.vqvae, args.cache, progress=sys.stderr.isatty())
    print(summary.format())
