"""bench/code_crops.py runs on the bundled demo model and word-timed songs it writes here, and refuses a folder
that is not a lyric model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

BENCH = Path(__file__).resolve().parents[2] / "bench" / "code_crops.py"
DEMO = Path(__file__).resolve().parents[2] / "src" / "openjukebox" / "models" / "demo"
SR = 44100


def _songs(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, artist in enumerate(("june meadow", "iron lanterns")):
        sf.write(folder / f"song_{i}.flac", 0.1 * rng.standard_normal(3 * SR).astype(np.float32), SR)
        words = [{"word": w, "start": 0.4 * k, "end": 0.4 * k + 0.3} for k, w in enumerate(("la", "la", "hey"))]
        sidecar = {"artist": artist, "genre": ["folk"], "lyrics": "la la hey", "words": words}
        (folder / f"song_{i}.json").write_text(json.dumps(sidecar))


def test_bench_times_the_cached_and_uncached_loaders(import_script, tmp_path, capsys):
    bench = import_script(BENCH, "bench_code_crops")
    _songs(tmp_path / "songs")
    songs = str(tmp_path / "songs")
    assert bench.main(["--model", str(DEMO), "--songs", songs, "--batches", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 songs (2 word-timed), n_ctx 512" in out and "| lyrics + sung keys |" in out
    assert "speed-up from the cache" in out
    assert bench.main(["--model", str(tmp_path), "--songs", songs]) == 2
    assert "has no vqvae/ and prior_level_2/ model" in capsys.readouterr().err
