"""An offline synthetic corpus of sung songs with exact word timings (`openjukebox data synth`).

Each song is a procedural arrangement (`midi.arrange`) of one genre, sung by one artist of that genre
(`styles.GENRES`, `styles.ARTISTS`: 6 genres x 4 artists). The accompaniment (drums, bass, chords, lead) is a
MIDI file rendered by FluidSynth with the General MIDI SoundFont. The vocal is sung word by word: eSpeak NG speaks
each word, its leading and trailing silence is trimmed, and Praat's PSOLA (through parselmouth) gives it the
melody note's pitch (with a light vibrato) and stretches it towards the note's length. Each word is placed on its
beat, so its start and end seconds in the mix are known exactly.

Output per song: `song_NNNN.flac` (44.1 kHz stereo), `song_NNNN.json` (artist, genre list, title, lyrics, words
with start/end seconds, bpm, key, seconds) and `stems/song_NNNN.vocal.flac` (the vocal alone, at its level in
the mix). Everything is a pure function of (seed, song index): the same seed gives the same bytes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from openjukebox.data.index import IGNORE_MARKER
from openjukebox.data.synth.midi import Arrangement, arrange, write_midi
from openjukebox.data.synth.styles import ARTISTS, GENRE_BY_NAME, GENRES, Artist, song_title
from openjukebox.errors import OpenJukeboxError

__all__ = ["ARTISTS", "GENRES", "SongSpec", "missing_dependencies", "plan_corpus", "synth_cli", "synthesize_corpus"]

SR = 44100
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MIN_MAX_SECONDS = 20.0  # the shortest song (72 bpm: 2 intro bars, 1 two-bar phrase, 1 outro bar, tail) is 18.2 s
TAIL_SECONDS = 1.5  # after the last bar, for the instruments' release
INSTALL_HINT = (
    "run `make synth-deps` (apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm espeak-ng sox)"
)


def missing_dependencies() -> list[str]:
    """What the synthesiser needs and cannot find, with how to install it; empty when all is there."""
    packages = [name for name in ("espeak-ng", "fluidsynth") if shutil.which(name) is None]
    if not SOUNDFONT.is_file():
        packages.append(f"fluid-soundfont-gm ({SOUNDFONT})")
    missing = [f"{', '.join(packages)} (system packages; {INSTALL_HINT})"] if packages else []
    if importlib.util.find_spec("parselmouth") is None:
        missing.append("praat-parselmouth (Python package; run `pip install praat-parselmouth`)")
    return missing


def _require_dependencies() -> None:
    missing = missing_dependencies()
    if missing:
        raise OpenJukeboxError("data synth needs " + "; ".join(missing))


@dataclass(frozen=True)
class SongSpec:
    index: int
    artist: str
    genre: str
    seed: int  # of the corpus
    target_seconds: float

    @property
    def name(self) -> str:
        return f"song_{self.index:04d}"

    def rng(self) -> random.Random:
        return random.Random(f"openjukebox-synth:{self.seed}:{self.index}")  # str seeds hash with sha512: stable


def plan_corpus(n_songs: int, seed: int, *, min_seconds: float = 20.0, max_seconds: float = 40.0) -> list[SongSpec]:
    """Who sings which song, in which genre, for how long. Every run of len(ARTISTS) songs covers every artist
    (and so every genre x artist pair) once, in an order shuffled by the seed."""
    if n_songs < 0:
        raise OpenJukeboxError(f"number of songs must be >= 0; got {n_songs}")
    if not (0 < min_seconds <= max_seconds and max_seconds >= MIN_MAX_SECONDS):
        raise OpenJukeboxError(
            f"need 0 < min_seconds <= max_seconds and max_seconds >= {MIN_MAX_SECONDS} (the slowest song's intro, "
            f"one sung phrase and outro); got {min_seconds}, {max_seconds}"
        )
    rng = random.Random(f"openjukebox-synth-plan:{seed}")
    specs: list[SongSpec] = []
    order: list[Artist] = []
    for i in range(n_songs):
        if not order:
            order = list(ARTISTS)
            rng.shuffle(order)
        artist = order.pop()
        specs.append(SongSpec(i, artist.name, artist.genre, seed, round(rng.uniform(min_seconds, max_seconds), 3)))
    return specs


# ---------------------------------------------------------------------------------------------------- vocal


def _run(cmd: list[str]) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        detail = e.stderr.decode(errors="replace").strip().splitlines()[-1:] if e.stderr else []
        raise OpenJukeboxError(f"{cmd[0]} failed (exit {e.returncode}): {' '.join(detail) or 'no message'}") from e


def _voiced_span(x: np.ndarray, sr: int, rel_db: float = -35.0) -> tuple[int, int]:
    """[start, end) samples from the first to the last 5 ms frame within `rel_db` of the loudest frame."""
    hop = max(1, sr // 200)
    n = len(x) // hop
    if n == 0:
        return 0, 0
    rms = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > max(rms.max() * 10 ** (rel_db / 20), 1e-5))
    if len(loud) == 0:
        return 0, 0
    return int(loud[0] * hop), int(min(len(x), (loud[-1] + 1) * hop))


def _sing_word(word: str, artist: Artist, pitch: int, seconds: float, workdir: Path, seed: int) -> np.ndarray:
    """`word` spoken by the artist's voice, at MIDI `pitch`, stretched towards `seconds`, trimmed, at SR."""
    import parselmouth
    from parselmouth.praat import call, run

    wav = workdir / "word.wav"
    _run(["espeak-ng", "-v", artist.voice, "-s", str(artist.speed), "-w", str(wav), word])
    x, sr = sf.read(wav, dtype="float64")
    a, b = _voiced_span(x, sr)
    if b - a < sr // 50:
        raise OpenJukeboxError(f"espeak-ng produced no audible speech for {word!r} with voice {artist.voice}")
    sound = parselmouth.Sound(x[a:b], sampling_frequency=sr)
    dur = sound.duration
    manip = call(sound, "To Manipulation", 0.01, 60, 600)
    freq = 440.0 * 2 ** ((pitch - 69) / 12)
    tier = call("Create PitchTier", "pitch", 0, dur)
    for t in np.arange(0.0, dur + 0.02, 0.02):  # vibrato (5.5 Hz, +-0.3 semitone) after the first 150 ms
        depth = 0.3 * min(1.0, max(0.0, (t - 0.15) / 0.15))
        call(tier, "Add point", float(t), freq * 2 ** (depth * math.sin(2 * math.pi * 5.5 * t) / 12))
    call([tier, manip], "Replace pitch tier")
    factor = min(max(0.92 * seconds / dur, 0.6), 2.5)
    dtier = call("Create DurationTier", "duration", 0, dur)
    call(dtier, "Add point", 0, factor)
    call([manip, dtier], "Replace duration tier")
    run(f"random_initializeWithSeedUnsafelyButPredictably ({seed})")  # PSOLA draws random pulses where unvoiced
    y = call(manip, "Get resynthesis (overlap-add)").values[0]
    y = soxr.resample(y, sr, SR)
    a, b = _voiced_span(y, SR)
    y = y[a : min(b, a + int(0.97 * seconds * SR))].copy()
    fade = min(len(y) // 4, SR // 200)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        y[:fade] *= ramp
        y[len(y) - fade :] *= ramp[::-1]
    return y


def _sing(arr: Arrangement, artist: Artist, total: int, workdir: Path, seed: int) -> tuple[np.ndarray, list[dict]]:
    from parselmouth.praat import run

    vocal = np.zeros(total)
    words = []
    for k, (word, pitch, start, beats) in enumerate(arr.sung):
        y = _sing_word(word, artist, pitch, beats * arr.beat_seconds, workdir, seed + k)
        pos = round(start * arr.beat_seconds * SR)
        vocal[pos : pos + len(y)] += y
        words.append({"word": word, "start": round(pos / SR, 6), "end": round((pos + len(y)) / SR, 6)})
    run("random_initializeSafelyAndUnpredictably ()")
    return vocal, words


# ---------------------------------------------------------------------------------------------------- song

_KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def render_song(
    spec: SongSpec, out_dir: Path, *, min_seconds: float = 20.0, max_seconds: float = 40.0, stems: bool = True
) -> Path:
    """Synthesize one song into `out_dir`; returns the path of its audio file."""
    out_dir = Path(out_dir)
    artist = next(a for a in ARTISTS if a.name == spec.artist)
    rng = spec.rng()
    title = song_title(rng)
    arr = arrange(GENRE_BY_NAME[spec.genre], artist, rng, spec.target_seconds, TAIL_SECONDS, max_seconds)
    praat_seed = rng.randrange(1, 2**30)
    seconds = max(arr.bars * 4 * arr.beat_seconds + TAIL_SECONDS, min_seconds)
    total = round(seconds * SR)
    with tempfile.TemporaryDirectory(prefix="ojb-synth-") as tmp:
        work = Path(tmp)
        write_midi(work / "song.mid", arr)
        render = ["fluidsynth", "-ni", "-g", "0.8", "-r", str(SR), "-O", "float", "-F", str(work / "acc.wav")]
        _run([*render, str(SOUNDFONT), str(work / "song.mid")])
        acc, acc_sr = sf.read(work / "acc.wav", dtype="float64", always_2d=True)
        vocal, words = _sing(arr, artist, total, work, praat_seed)
    if acc_sr != SR:
        acc = soxr.resample(acc, acc_sr, SR)
    acc = np.pad(acc[:total], ((0, max(0, total - len(acc))), (0, 2 - acc.shape[1])), mode="constant")
    sung = np.abs(vocal) > 0
    acc_rms = float(np.sqrt(np.mean(acc**2))) or 1.0
    vocal_rms = float(np.sqrt(np.mean(vocal[sung] ** 2))) if sung.any() else 1.0
    vocal *= 1.3 * acc_rms / vocal_rms
    mix = acc + vocal[:, None]
    scale = 0.89 / max(float(np.abs(mix).max()), 1e-9)
    out_dir.mkdir(parents=True, exist_ok=True)
    audio_path = out_dir / f"{spec.name}.flac"
    sf.write(audio_path, (mix * scale).astype(np.float32), SR, subtype="PCM_16", format="FLAC")
    if stems:
        (out_dir / "stems").mkdir(exist_ok=True)
        (out_dir / "stems" / IGNORE_MARKER).touch()  # stems are not songs: `data index` skips this folder
        sf.write(
            out_dir / "stems" / f"{spec.name}.vocal.flac", (vocal * scale).astype(np.float32), SR, subtype="PCM_16"
        )
    sidecar = {
        "artist": spec.artist,
        "genre": [spec.genre],
        "title": title,
        "lyrics": "\n".join(arr.lines),
        "words": words,
        "melody": [pitch for _, pitch, _, _ in arr.sung],  # MIDI note sung on each word
        "bpm": arr.bpm,
        "key": _KEYS[arr.tonic] + (" minor" if arr.minor else " major"),
        "seconds": round(total / SR, 6),
        "voice": artist.voice,
    }
    (out_dir / f"{spec.name}.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return audio_path


def _render(job: tuple[SongSpec, Path, float, float, bool]) -> Path:
    return render_song(job[0], job[1], min_seconds=job[2], max_seconds=job[3], stems=job[4])


def synthesize_corpus(
    out_dir: str | os.PathLike,
    n_songs: int,
    seed: int,
    *,
    min_seconds: float = 20.0,
    max_seconds: float = 40.0,
    progress: bool = True,
    workers: int | None = None,
    stems: bool = True,
) -> list[Path]:
    """Write `n_songs` synthetic songs (audio, JSON sidecar, vocal stem) into `out_dir`; returns the audio paths.

    Deterministic for `seed` (whatever `workers`). `workers` processes render songs in parallel (default:
    min(2, CPUs)).
    """
    _require_dependencies()
    specs = plan_corpus(n_songs, seed, min_seconds=min_seconds, max_seconds=max_seconds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, out, min_seconds, max_seconds, stems) for s in specs]
    workers = workers or min(2, os.cpu_count() or 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synth", unit="song")

    def results() -> Iterator[Path]:
        if workers <= 1 or len(jobs) <= 1:
            yield from map(_render, jobs)
            return
        ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold torch threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            yield from pool.map(_render, jobs)

    paths = []
    for path in results():
        paths.append(path)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return paths


def synth_cli(args) -> None:
    """`openjukebox data synth --out DIR --songs N --seed S`."""
    paths = synthesize_corpus(Path(args.out), args.songs, args.seed)
    seconds, genres, artists = 0.0, set(), set()
    for p in paths:
        meta = json.loads(p.with_suffix(".json").read_text())
        seconds += meta["seconds"]
        genres.update(meta["genre"])
        artists.add(meta["artist"])
    print(
        f"{args.out}: {len(paths)} songs, {seconds / 60:.1f} minutes, "
        f"{len(genres)} genres ({', '.join(sorted(genres))}), {len(artists)} artists"
    )
