"""Training priors on cached codes (`openjukebox prior train`): the tiny top prior overfits, a stopped run
resumes bit for bit, upsamplers train, fine-tuning grows the label tables without touching existing rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from openjukebox.checkpoints.codes import CodesFile
from openjukebox.checkpoints.format import read_config
from openjukebox.checkpoints.prior import load_prior, load_vocabularies
from openjukebox.cli import main
from openjukebox.data.code_cache import open_code_cache
from openjukebox.data.index import build_index, open_index
from openjukebox.data.official_ids import load_official_ids
from openjukebox.data.songs import OfficialIds
from openjukebox.data.vocab import Vocabulary
from openjukebox.prior.train import extend_vocabulary, model_and_labels, run_config
from openjukebox.vqvae.config import VQVAEConfig

SR = 44100
HOPS = (8, 32, 128)
BINS = 64  # the tiny VQ-VAE's codes per level
STEPS_UP = 250
TOP_CODES = 128  # two tiny top windows per song (the timing embeddings need songs of at least 0.19 s)


def make_code_dataset(root: Path, vqvae_dir: Path, metas: list[dict], seed: int = 0, upsampled: bool = False) -> Path:
    """An indexed folder of labelled songs whose cached codes are random sequences (fast to write, and a real
    test of memorisation: nothing about them is predictable without learning them).

    With `upsampled`, only the top codes are random; below, code t of level L is a function of code t // 4 of
    level L + 1 (and of t % 4), which an upsampler can only predict from correctly aligned upper codes."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, meta in enumerate(metas):
        sf.write(root / f"s{i}.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)  # distinct hashes
        (root / f"s{i}.json").write_text(json.dumps(meta))
    build_index(root, progress=False)
    cache = open_code_cache(root, vqvae_dir)
    with open_index(root) as index:
        for r in index.songs():
            zs = {level: rng.integers(0, BINS, (1, TOP_CODES * HOPS[2] // hop)) for level, hop in enumerate(HOPS)}
            for level in (1, 0) if upsampled else ():
                t = np.arange(zs[level].shape[1])
                zs[level] = (4 * zs[level + 1][:, t // 4] + t % 4) % BINS
            cache.put(r.content_hash, CodesFile(zs, SR, HOPS, BINS, TOP_CODES * HOPS[2]))
    return root


METAS = [
    {"artist": "Alpha", "genre": "rock", "lyrics": "hello there, hello world"},
    {"artist": "Bravo", "genre": "jazz", "lyrics": "la la la la"},
    {"artist": "Charlie", "genre": "pop", "lyrics": "one two three four"},
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_vqvae_dir) -> Path:
    return make_code_dataset(tmp_path_factory.mktemp("prior_train") / "songs", tiny_vqvae_dir, METAS)


def _train(data: Path, vqvae: Path, out: Path, steps: int, *extra: str) -> int:
    args = ["prior", "train", "--data", str(data), "--vqvae", str(vqvae), "--out", str(out), "--steps", str(steps),
            "--batch-size", "3", "--warmup-steps", "10", "--workers", "0", "--no-progress", *extra]  # fmt: skip
    return main(args)


def _scalars(run: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    return [e.value for e in events.Scalars(tag)]


def test_tiny_top_prior_overfits_a_few_code_sequences(tmp_path, dataset, tiny_vqvae_dir, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    extra = ["--preset", "tiny", "--level", "2", "--lr", "3e-3", "--log-every", "20", "--save-every", "100",
             "--val-every", "100", "--val-fraction", "0.34", "--val-batches", "2"]  # fmt: skip
    assert _train(dataset, tiny_vqvae_dir, out, 200, *extra) == 0
    music = _scalars(out, "train/music_loss")
    assert music[0] > 4.5, f"an untrained prior is near log2({BINS}) = 6 bits per code: {music}"
    assert music[-1] < 2.0, f"the training windows should be nearly memorised: {music}"
    assert _scalars(out, "train/lyric_loss")[-1] < _scalars(out, "train/lyric_loss")[0]
    assert len(_scalars(out, "val/loss_level2")) == 2 and len(_scalars(out, "val/music_loss_level2")) == 2
    assert "trained the level-2 prior for 200 steps" in capsys.readouterr().out

    model = load_prior(out)  # the run folder is a usable prior with its vocabularies
    assert model.config.level == 2 and model.config.bins == BINS and model.config.labels.ids == "ours"
    artists, genres = load_vocabularies(out)
    assert set(artists.names) == {"unknown", "Alpha", "Bravo", "Charlie"} and "jazz" in genres
    assert model.config.labels.artist_bins == 64  # the preset's size, enough for 4 names


def test_stopped_run_resumes_bit_identically(tmp_path, dataset, tiny_vqvae_dir):
    torch.set_num_threads(1)
    extra = ["--lr", "1e-3", "--save-every", "3", "--val-every", "4", "--val-fraction", "0.34", "--val-batches", "1"]
    new = ["--preset", "tiny", "--level", "1"]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert _train(dataset, tiny_vqvae_dir, reference, 8, *new, *extra) == 0
    assert _train(dataset, tiny_vqvae_dir, resumed, 3, *new, *extra) == 0  # a run stopped at step 3 ...
    assert _train(dataset, tiny_vqvae_dir, resumed, 8, "--resume", *extra) == 0  # ... continued to step 8
    for name in ("model.safetensors", "checkpoints/step_00000008/train_state.safetensors"):
        want, got = load_file(reference / name), load_file(resumed / name)
        assert want.keys() == got.keys()
        for key in want:
            assert torch.equal(want[key], got[key]), f"{name}: {key} differs from the uninterrupted run"


def test_resume_with_other_data_settings_is_refused(tmp_path, dataset, tiny_vqvae_dir, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    common = ["--save-every", "2", "--val-every", "0", "--val-fraction", "0.34"]
    assert _train(dataset, tiny_vqvae_dir, out, 2, "--preset", "tiny", "--lyric-jitter", "4", *common) == 0
    assert _train(dataset, tiny_vqvae_dir, out, 4, "--resume", *common) == 1  # jitter 0 is not the run's 4
    assert "started with --lyric-jitter 4, not 0" in capsys.readouterr().err
    assert _train(dataset, tiny_vqvae_dir, out, 4, "--resume", *common[:-1], "0.5", "--lyric-jitter", "4") == 1
    assert "--val-fraction 0.34, not 0.5" in capsys.readouterr().err
    assert _train(dataset, tiny_vqvae_dir, out, 4, "--resume", "--lyric-jitter", "4", "--label-dropout", "0.2",
                  *common) == 1  # fmt: skip
    assert "started with --label-dropout 0.0, not 0.2" in capsys.readouterr().err
    assert _train(dataset, tiny_vqvae_dir, out, 4, "--resume", "--lyric-jitter", "4", *common) == 0


def test_label_dropout_is_recorded_and_checked(tmp_path, dataset, tiny_vqvae_dir, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--val-every", "0"]
    assert _train(dataset, tiny_vqvae_dir, out, 2, *common, "--label-dropout", "0.3") == 0
    assert json.loads((out / "prior_data.json").read_text())["label_dropout"] == 0.3
    assert _train(dataset, tiny_vqvae_dir, tmp_path / "bad", 2, *common, "--label-dropout", "1") == 1
    assert "label dropout must be in [0, 1), got 1.0" in capsys.readouterr().err


TIMED = [  # sung words inside the 0.37 s of codes: every tiny window (0.19 s) has characters being sung
    {"word": w, "start": 0.01 + 0.045 * i, "end": 0.045 * (i + 1)}
    for i, w in enumerate(["hello", "there", "my", "old", "friend"])
]


def test_align_loss_teaches_the_alignment_head_where_the_singing_is(tmp_path, tiny_vqvae_dir, capsys):
    torch.set_num_threads(1)
    metas = [dict(m, lyrics=" ".join(w["word"] for w in TIMED), words=TIMED) for m in METAS]
    data = make_code_dataset(tmp_path / "timed", tiny_vqvae_dir, metas)
    out = tmp_path / "run"
    extra = ["--preset", "tiny", "--level", "2", "--lr", "3e-3", "--log-every", "10", "--val-every", "200",
             "--val-fraction", "0.34", "--val-batches", "2", "--align-loss", "1"]  # fmt: skip
    assert _train(data, tiny_vqvae_dir, out, 400, *extra) == 0
    align = _scalars(out, "train/align_loss")
    # the 16 keys of the tiny prior's lyric window: log2(16) = 4 bits for attention spread evenly
    assert align[0] > 3.0 and align[-1] < 0.5 * align[0], align
    # measured on the held-out song's windows too (its random codes are not learnt: no assertion on the value)
    val = _scalars(out, "val/align_loss_level2")
    assert len(val) == 2 and all(np.isfinite(val)) and len(_scalars(out, "val/loss_level2")) == 2
    assert json.loads((out / "prior_data.json").read_text())["align_loss"] == 1.0
    capsys.readouterr()
    # songs without word timings, an upsampler (no lyrics), a negative weight: clear errors
    assert _train(make_code_dataset(tmp_path / "plain", tiny_vqvae_dir, METAS), tiny_vqvae_dir, tmp_path / "a", 2,
                  "--preset", "tiny", "--val-every", "0", "--align-loss", "1") == 1  # fmt: skip
    assert "none of the training songs has word timings" in capsys.readouterr().err
    assert _train(data, tiny_vqvae_dir, tmp_path / "b", 2, "--preset", "tiny", "--level", "1", "--align-loss", "1") == 1
    assert "--align-loss needs a lyrics prior" in capsys.readouterr().err
    assert _train(data, tiny_vqvae_dir, tmp_path / "c", 2, "--preset", "tiny", "--align-loss", "-1") == 1
    assert "must be >= 0" in capsys.readouterr().err


def test_two_processes_end_identical(tmp_path, dataset, tiny_vqvae_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "openjukebox.cli",
           "prior", "train", "--data", str(dataset), "--vqvae", str(tiny_vqvae_dir), "--out", str(out),
           "--preset", "tiny", "--level", "2", "--steps", "3", "--batch-size", "2", "--workers", "0", "--no-progress",
           "--val-every", "2", "--val-fraction", "0.34"]  # fmt: skip
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 x cpu" in result.stderr and "all 2 processes hold identical weights and buffers" in result.stderr
    assert result.stdout.count("trained the level-2 prior for 3 steps") == 1  # rank 0 reports
    assert load_prior(out).config.level == 2


@pytest.fixture(scope="module")
def upsampled(tmp_path_factory, tiny_vqvae_dir) -> Path:
    return make_code_dataset(tmp_path_factory.mktemp("prior_up") / "songs", tiny_vqvae_dir, METAS, upsampled=True)


@pytest.mark.parametrize("level", [1, 0])
def test_upsamplers_learn_from_the_level_above(tmp_path, upsampled, tiny_vqvae_dir, level):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    extra = ["--preset", "tiny", "--level", str(level), "--lr", "3e-3", "--log-every", "10", "--val-every", "0"]
    assert _train(upsampled, tiny_vqvae_dir, out, STEPS_UP, *extra) == 0
    loss = _scalars(out, "train/loss")
    # Without the upper codes one code in four (4 unknown bits) stays unpredictable: at best 1 bit per code.
    assert loss[0] > 5 and loss[-1] < 0.7, loss
    model = load_prior(out)
    assert model.config.level == level and model.config.conditioner is not None and model.config.lyrics is None


def test_extend_vocabulary_keeps_ids_and_appends_new_names():
    saved = Vocabulary.build(["Alpha", "Bravo", "Alpha"], kind="artist")
    dataset = Vocabulary.build(["Zed", "Bravo", "Zed", "Young"], kind="artist")
    grown = extend_vocabulary(saved, dataset)
    assert grown.names[: len(saved)] == saved.names and grown.names[len(saved) :] == ("Zed", "Young")
    assert [grown.id(n) for n in saved.names[1:]] == [saved.id(n) for n in saved.names[1:]]
    assert extend_vocabulary(saved, saved) is saved


def test_fine_tuning_grows_labels_and_keeps_existing_rows(tmp_path, dataset, tiny_vqvae_dir):
    torch.set_num_threads(1)
    base = tmp_path / "base"
    assert _train(dataset, tiny_vqvae_dir, base, 2, "--preset", "tiny", "--level", "1", "--val-every", "0") == 0
    old = load_prior(base)
    old_artists, old_genres = load_vocabularies(base)

    # 70 new artists (more than the 64 table rows) and one new genre
    metas = [{"artist": f"New Artist {i}", "genre": "polka"} for i in range(70)] + [METAS[1]]
    new_data = make_code_dataset(tmp_path / "new", tiny_vqvae_dir, metas, seed=1)
    args = Namespace(resume=False, init=base, preset=None, level=None, out=tmp_path / "ft", seed=0, ids=None)
    config = run_config(args, VQVAEConfig.from_dict(read_config(tiny_vqvae_dir, "vqvae")), tiny_vqvae_dir)
    with open_index(new_data) as index:
        model, ids, artists, genres = model_and_labels(args, config, index)
    assert artists.names[: len(old_artists)] == old_artists.names  # existing ids unchanged
    assert genres.names[: len(old_genres)] == old_genres.names
    assert len(artists) == len(old_artists) + 70 and genres.id("polka") == len(old_genres)
    assert ids.artist_id("New Artist 3") >= len(old_artists) and ids.artist_id("Bravo") == old_artists.id("Bravo")
    labels = model.config.labels
    assert (labels.artist_bins, labels.genre_bins) == (len(artists), 64)
    for name in ("artist_embedding", "genre_embedding"):
        before, after = getattr(old.labels, name).weight, getattr(model.labels, name).weight
        assert torch.equal(after[: before.shape[0]], before), f"{name}: existing rows changed"
    new_rows = model.labels.artist_embedding.weight[old.config.labels.artist_bins :]
    assert new_rows.shape[0] == len(artists) - 64 and new_rows.abs().sum() > 0  # initialised, not zero
    old_state, new_state = old.state_dict(), model.state_dict()
    for key, value in old_state.items():
        if "artist_embedding" not in key:
            assert torch.equal(new_state[key], value), key

    out = tmp_path / "ft"
    assert _train(new_data, tiny_vqvae_dir, out, 2, "--init", str(base), "--val-every", "0") == 0
    tuned = load_prior(out)
    assert tuned.config.labels.artist_bins == len(artists)
    assert load_vocabularies(out)[0].names == artists.names


def test_official_ids_map_names_like_the_original():
    ids = OfficialIds(*load_official_ids("v2"))
    assert ids.artist_id("The Beatles") == 278 and ids.artist_id(None) == 0
    assert ids.genre_ids(["Blues Rock"]) == [2, 8]
    assert ids.artist_id("No Such Band Anywhere") == 0 and ids.genre_ids(["zzzz"]) == [0]
    assert ids.unknown() == ["artist 'No Such Band Anywhere'", "genre 'zzzz'"]
    v3 = OfficialIds(*load_official_ids("v3"))
    assert v3.genre_ids(["Rock", "Jazz"]) == [40]  # v3: one whole genre phrase
    assert v3.artist_id("The Beatles") == 7026 and v3.unknown() == []
