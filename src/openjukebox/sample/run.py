"""A sampling run folder: everything to reproduce a run, its state after every window, and its outputs.

    RUN_DIR/run.json                  the request (model, labels, lyrics, seconds, seed, settings per level, mode)
    RUN_DIR/state.npz                 codes of every level so far, rewritten atomically after every window
    RUN_DIR/level_<L>/codes.npz       the finished codes of level L (and the levels above)
    RUN_DIR/level_<L>/item_<i>.wav    sample i decoded from level L (level 2 first: a low-fidelity preview)
    RUN_DIR/level_<L>/item_<i>.png    its spectrogram
    RUN_DIR/level_<L>/metadata.json   model, labels, lyrics, seed, settings, timings, software version
    RUN_DIR/align/item_<i>/           lyric models: align.json, lyrics.lrc, alignment.png, karaoke.html

Every run is also listed in the library of generated songs (`library.py`, SQLite).

The random draws of a window depend only on the seed and the window's position (`pipeline.window_seed`), and the
state holds every code sampled so far, so a run killed at any point and continued with `--resume` writes the same
bits as an uninterrupted run. With `rng="original"` every window draws in turn from one generator seeded with the
seed (the original's single stream, so the original's codes for that seed); the state then also holds that
generator's state after the last finished window, and resuming restores it. A resumed run must use the same
model: run.json records a fingerprint of every model folder's config and weights file sizes, checked on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openjukebox import __version__
from openjukebox.checkpoints.codes import CodesFile, load_codes, save_codes
from openjukebox.checkpoints.hierarchy import ModelDirs
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import read_json_object, write_json_atomic
from openjukebox.sample import library
from openjukebox.sample.outputs import write_level_audio
from openjukebox.sample.pipeline import Pipeline, Progress, Song
from openjukebox.sample.settings import DECODE_MODES, MODES, RNG_MODES, LevelSampling, default_sampling

RUN_FILE = "run.json"
STATE_FILE = "state.npz"
RUN_FORMAT = "openjukebox-sample-run"
RUN_VERSION = 1


@dataclass
class RunSpec:
    """The request of a run (run.json)."""

    model: str
    mode: str
    length: int  # samples generated (a multiple of the top hop)
    n_samples: int
    seed: int
    artist: str = "unknown"
    genre: str = "unknown"
    lyrics: str = ""
    total_length: int = 0  # samples the song is said to last (timing and lyric windows); 0 = length
    levels: list[int] = field(default_factory=lambda: [2, 1, 0])
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # str(level) -> LevelSampling fields
    prompt: str | None = None  # audio file (primed)
    prompt_length: int = 0  # samples of it used
    codes: str | None = None  # codes file (continue / upsample)
    device: str = "cpu"
    precision: str = "fp32"  # prior weights: fp32, bf16 or fp16
    fingerprints: dict[str, str] = field(default_factory=dict)
    rng: str = "window"  # RNG_MODES
    decode: str = "auto"  # DECODE_MODES: the token loop (on a GPU in half precision, loops may round differently)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OpenJukeboxError(f"unknown sampling mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.rng not in RNG_MODES:
            raise OpenJukeboxError(f"unknown random number mode {self.rng!r}; known: {', '.join(RNG_MODES)}")
        if self.decode not in DECODE_MODES:
            raise OpenJukeboxError(f"unknown decode mode {self.decode!r}; known: {', '.join(DECODE_MODES)}")
        if self.n_samples < 1:
            raise OpenJukeboxError(f"--n-samples must be >= 1, got {self.n_samples}")

    def level_settings(self) -> dict[int, LevelSampling]:
        return {int(level): LevelSampling(**fields) for level, fields in self.settings.items()}

    def song(self) -> Song:
        return Song(self.artist, self.genre, self.lyrics, self.total_length or self.length, 0)


def model_fingerprints(dirs: ModelDirs) -> dict[str, str]:
    """Per model part: sha256 of its config.json plus the size of each weights file (cheap, catches swaps)."""
    out = {}
    for name, folder in [("vqvae", dirs.vqvae), *((f"prior_level_{k}", v) for k, v in sorted(dirs.priors.items()))]:
        h = hashlib.sha256((folder / "config.json").read_bytes())
        for f in sorted(folder.glob("*.safetensors")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        out[name] = h.hexdigest()[:16]
    return out


def check_prompt_length(path: str | os.PathLike, available: int, prompt_length: int, sr: int) -> None:
    """Raise unless the prompt audio (`available` samples at `sr`) holds the `prompt_length` samples asked for."""
    if available < prompt_length:
        raise OpenJukeboxError(
            f"{path}: {available / sr:.2f} s long, shorter than the {prompt_length / sr:.2f} s prompt asked for"
        )


def check_new_run_folder(folder: Path) -> None:
    """A new run never writes into a folder that holds anything (nothing of the user's is overwritten)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OpenJukeboxError(f"{folder}: exists and is not empty; use --resume {folder} or a new folder")


class SampleRun:
    """One run folder. `create` for a new run (refuses a non-empty folder), `open` to resume."""

    def __init__(self, folder: Path, spec: RunSpec) -> None:
        self.folder = folder
        self.spec = spec

    @classmethod
    def create(cls, folder: str | os.PathLike, spec: RunSpec) -> SampleRun:
        folder = Path(folder)
        check_new_run_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": RUN_FORMAT, "version": RUN_VERSION, "openjukebox_version": __version__, **asdict(spec)}
        write_json_atomic(folder / RUN_FILE, meta)
        return cls(folder, spec)

    @classmethod
    def open(cls, folder: str | os.PathLike) -> SampleRun:
        folder = Path(folder)
        if not (folder / RUN_FILE).is_file():
            raise OpenJukeboxError(f"{folder}: not a sampling run folder (no {RUN_FILE})")
        meta = read_json_object(folder / RUN_FILE)
        if meta.pop("format", None) != RUN_FORMAT or meta.pop("version", None) != RUN_VERSION:
            raise OpenJukeboxError(f"{folder / RUN_FILE}: not a run file of this version")
        meta.pop("openjukebox_version", None)
        try:
            spec = RunSpec(**meta)
        except TypeError as e:
            raise OpenJukeboxError(f"{folder / RUN_FILE}: damaged run file ({e})") from None
        return cls(folder, spec)

    def check_model(self, dirs: ModelDirs) -> None:
        found = model_fingerprints(dirs)
        if self.spec.fingerprints and found != self.spec.fingerprints:
            changed = sorted(
                k for k in found.keys() | self.spec.fingerprints.keys() if found.get(k) != self.spec.fingerprints.get(k)
            )
            raise OpenJukeboxError(
                f"{self.folder}: was sampled with a different model (changed: {', '.join(changed)}); "
                f"resume it with the model it was started with"
            )

    # -- state ----------------------------------------------------------------------------------------------

    def load_state(self) -> dict[int, torch.Tensor] | None:
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        codes = load_codes(path)
        return {level: torch.from_numpy(z) for level, z in codes.zs.items()}

    def load_generator(self, device: torch.device) -> torch.Generator | None:
        """The run's single generator (rng "original"), in the state saved with the codes, or fresh from the seed;
        None for per-window generators."""
        if self.spec.rng != "original":
            return None
        generator = torch.Generator(device).manual_seed(self.spec.seed)
        path = self.folder / STATE_FILE
        saved = load_codes(path).extra.get("generator_state") if path.is_file() else None
        if saved is not None:
            state = torch.frombuffer(bytearray(bytes.fromhex(saved)), dtype=torch.uint8)
            try:
                generator.set_state(state)
            except RuntimeError as e:
                raise OpenJukeboxError(f"{path}: the saved random number state does not fit ({e})") from None
        return generator

    def save_state(
        self, zs: dict[int, torch.Tensor], pipeline: Pipeline, generator: torch.Generator | None = None
    ) -> None:
        codes = self._codes_file(zs, pipeline, sorted(zs))
        if generator is not None:
            codes.extra["generator_state"] = generator.get_state().numpy().tobytes().hex()
        # Saved after every window: uncompressed (9 ms -> 0.1 ms for the demo's 87k codes; ~50% larger).
        save_codes(self.folder / STATE_FILE, codes, compress=False)

    def _codes_file(self, zs: dict[int, torch.Tensor], pipeline: Pipeline, levels: list[int]) -> CodesFile:
        cfg = pipeline.vqvae.config
        return CodesFile(
            zs={level: zs[level].numpy() for level in levels},
            sample_rate=cfg.sample_rate,
            hop_lengths=tuple(pipeline.vqvae.hop_lengths),
            l_bins=cfg.l_bins,
            length=self.spec.length,
            extra={"run": str(self.folder), "seed": self.spec.seed},
        )

    # -- execution ------------------------------------------------------------------------------------------

    def initial_codes(self, pipeline: Pipeline) -> dict[int, torch.Tensor]:
        """Codes to start from: the saved state, else those of the mode (prompt, codes file, or none)."""
        saved = self.load_state()
        if saved is not None:
            return saved
        spec = self.spec
        n = spec.n_samples
        if spec.mode == "ancestral":
            return {level: torch.zeros(n, 0, dtype=torch.long) for level in range(pipeline.levels)}
        if spec.mode == "primed":
            from openjukebox.audio import load_audio

            sr = pipeline.vqvae.config.sample_rate
            audio = load_audio(spec.prompt, sr)
            check_prompt_length(spec.prompt, len(audio), spec.prompt_length, sr)
            prompt = torch.from_numpy(np.asarray(audio[: spec.prompt_length], dtype=np.float32))
            return pipeline.encode_prompt(prompt.view(1, -1).repeat(n, 1))
        codes = load_codes(spec.codes)
        cfg = pipeline.vqvae.config
        codes.check_compatible(tuple(pipeline.vqvae.hop_lengths), cfg.l_bins, cfg.sample_rate, str(spec.codes))
        zs = {level: torch.from_numpy(z).long() for level, z in codes.zs.items()}
        for level, z in zs.items():
            if z.shape[0] == 1 and n > 1:
                zs[level] = z.repeat(n, 1)
            elif z.shape[0] != n:
                raise OpenJukeboxError(f"{spec.codes}: holds {z.shape[0]} samples, not {n} (--n-samples)")
        return zs

    def execute(
        self, pipeline: Pipeline, progress: Callable[[Progress], None] | None = None
    ) -> dict[int, torch.Tensor]:
        spec = self.spec
        generator = self.load_generator(pipeline.device)
        zs = self.initial_codes(pipeline)
        self.save_state(zs, pipeline, generator)
        timings: dict[int, float] = {}
        started = [time.perf_counter()]

        def on_window(level: int, window, zs: dict[int, torch.Tensor]) -> None:
            self.save_state(zs, pipeline, generator)

        alignments: dict[int, Any] = {}

        def on_level(level: int, zs: dict[int, torch.Tensor]) -> None:
            timings[level] = time.perf_counter() - started[0]
            self.write_level(level, zs, pipeline, timings[level])
            self.write_alignments(level, zs, pipeline, alignments)
            library.record_level(self.folder, level)
            started[0] = time.perf_counter()

        library.record_run(self.folder, spec, pipeline.vqvae.config.sample_rate)

        levels = [level for level in spec.levels if level < pipeline.levels]
        for level in range(pipeline.levels):
            zs.setdefault(level, torch.zeros(spec.n_samples, 0, dtype=torch.long))
        zs = pipeline.sample_levels(
            zs, spec.song(), spec.length, levels, spec.seed, spec.level_settings(), on_window, on_level, progress,
            generator,
        )  # fmt: skip
        return zs

    def write_alignments(
        self, level: int, zs: dict[int, torch.Tensor], pipeline: Pipeline, alignments: dict[int, Any]
    ) -> None:
        """Lyrics alignment of every sample, RUN/align/item_<i>/ (align.json, lyrics.lrc, alignment.png,
        karaoke.html): computed from the top-level codes once they exist, and rewritten with the audio of each
        finer level as it is decoded, so the karaoke page always plays the best audio so far."""
        from openjukebox.align.aligner import align_codes
        from openjukebox.align.outputs import write_alignment

        top = pipeline.top_level
        prior, labeller = pipeline.priors.get(top), pipeline.labellers.get(top)
        if prior is None or labeller is None or prior.config.alignment is None or top not in zs:
            return
        if zs[top].shape[1] == 0 or not self.spec.lyrics.strip():
            return
        spec = self.spec
        hop = self.spec.level_settings().get(top, default_sampling(top)).hop_fraction
        prior.to(pipeline.device)
        try:
            for i in range(zs[top].shape[0]):
                if i not in alignments:
                    alignments[i] = align_codes(
                        prior,
                        labeller,
                        zs[top][i : i + 1].to(pipeline.device),
                        spec.artist,
                        spec.genre,
                        spec.lyrics,
                        total_length=spec.total_length or spec.length,
                        hop_fraction=hop,
                        source="sampled",
                    )
                audio = self.folder / f"level_{level}" / f"item_{i}.wav"
                title = f"{spec.artist} - {spec.genre} (sample {i}, level {level})"
                write_alignment(self.folder / "align" / f"item_{i}", alignments[i], audio, title)
        finally:
            if pipeline.device.type != "cpu":
                prior.to("cpu")

    def write_level(self, level: int, zs: dict[int, torch.Tensor], pipeline: Pipeline, seconds: float) -> None:
        """codes.npz, item_<i>.wav/.png and metadata.json of a finished level (written once; metadata last)."""
        folder = self.folder / f"level_{level}"
        if (folder / "metadata.json").is_file():
            return  # written before the run was interrupted
        folder.mkdir(parents=True, exist_ok=True)
        save_codes(folder / "codes.npz", self._codes_file(zs, pipeline, [k for k in sorted(zs) if k >= level]))
        with torch.no_grad():
            audio = pipeline.vqvae.decode(zs[level].to(torch.long), level)
        sr = pipeline.vqvae.config.sample_rate
        wavs = write_level_audio(folder, audio, sr)
        spec = self.spec
        prior = pipeline.priors.get(level)
        meta = {
            "level": level,
            "model": spec.model,
            "mode": spec.mode,
            "artist": spec.artist,
            "genre": spec.genre,
            "lyrics": spec.lyrics,
            "seed": spec.seed,
            "rng": spec.rng,
            "n_samples": spec.n_samples,
            "seconds": spec.length / sr,
            "total_seconds": (spec.total_length or spec.length) / sr,
            "settings": asdict(spec.level_settings().get(level) or default_sampling(level)),
            "prior": None if prior is None else prior.config.to_dict(),
            "sampling_seconds": round(seconds, 3),
            "files": [p.name for p in wavs],
            "openjukebox_version": __version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "device": spec.device,
            "precision": spec.precision,
            "decode": spec.decode,
        }
        write_json_atomic(folder / "metadata.json", json.loads(json.dumps(meta)))
