"""Import of released prior checkpoints (`prior_level_*.pth.tar`) into our format, against the original code.

Each of the five released kinds is built in the original code (jukebox-infer) at CI size with seeded random
weights, saved the way jukebox saved its checkpoints (`{'hps', 'model', 'step'}`), imported, loaded with
`load_prior` and run: logits must equal the original's. Also: fp16 Conv1D weights (the 5b tops) are kept as fp16
and upcast on load, the legacy (non-zip) torch format, config inference from hps / shapes / presets with one-line
errors, refusal of pickled code, damaged files, and peak memory of the streaming import measured in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from openjukebox.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE
from openjukebox.checkpoints.hierarchy import official_prior_dir
from openjukebox.checkpoints.original import import_vqvae
from openjukebox.checkpoints.original_prior import import_prior, original_kind, prior_config_from_original
from openjukebox.checkpoints.prior import load_prior
from openjukebox.errors import OpenJukeboxError

pytest.importorskip("jukebox_infer")

PARITY = Path(__file__).resolve().parents[1] / "parity"
if str(PARITY) not in sys.path:
    sys.path.insert(0, str(PARITY))

from reference_prior import (  # noqa: E402
    _HPARAM_SET,
    KINDS,
    SIZES,
    build_reference,
    make_inputs,
    our_config,
    reference_forward,
)


@pytest.fixture(autouse=True)
def _cpu_long_tensor(monkeypatch):
    # The original asserts `isinstance(y, t.cuda.LongTensor)`; on CPU let that check accept CPU tensors.
    monkeypatch.setattr(torch.cuda, "LongTensor", torch.LongTensor, raising=False)


def released_hps(kind: str, size: str = "ci", **overrides) -> dict:
    """The hps a training run of `kind` saved: the VQ-VAE set, the prior set and the size overrides (original names)."""
    from jukebox_infer.hparams import setup_hparams

    hp = dict(SIZES[size][kind], restore_prior="", fp16_params=False)
    hp.update(overrides)
    return dict(setup_hparams(f"vqvae,{_HPARAM_SET[kind]}", hp))


def save_released(model: torch.nn.Module, path: Path, hps: dict | None, legacy: bool = False) -> Path:
    """Write `path` like jukebox's `save_checkpoint`: {'hps': plain dict, 'model': state_dict, 'step': int}."""
    torch.save({"hps": hps, "model": model.state_dict(), "step": 7}, path, _use_new_zipfile_serialization=not legacy)
    return path


def assert_logits_match(ref: torch.nn.Module, folder: Path) -> None:
    ours = load_prior(folder).train()  # the original's training path, as the parity tests compare
    config = ours.config
    inputs = make_inputs(config)
    with torch.no_grad():
        _, metrics = reference_forward(ref, inputs)
        got = ours(inputs["codes"], inputs["upper"], inputs["y"])
    want = metrics["preds"]
    if config.merged:  # the original's logits cover [lyrics | music] over the merged vocabulary
        want = want[:, config.n_tokens :, ours.n_vocab :]
    assert got.logits.shape == want.shape == (2, config.n_ctx, 2048)
    torch.testing.assert_close(got.logits, want, atol=1e-5, rtol=0)


# Where each kind lands by default: the released model folder and level that sampling resolves.
DEFAULT_PLACE = {
    "5b": ("5b", 2),
    "5b_lyrics": ("5b_lyrics", 2),
    "1b_lyrics": ("1b_lyrics", 2),
    "upsampler_level_1": ("5b", 1),
    "upsampler_level_0": ("5b", 0),
}


@pytest.mark.parametrize("kind", KINDS)
def test_released_prior_imports_to_the_same_logits(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENJUKEBOX_HOME", str(tmp_path / "home"))
    ref = build_reference(kind, "ci")
    path = save_released(ref, tmp_path / "prior_level_x.pth.tar", released_hps(kind))
    assert original_kind(path) == "prior"
    folder = import_prior(path, None, progress=False)
    assert folder == official_prior_dir(*DEFAULT_PLACE[kind])
    assert json.loads((folder / CONFIG_FILE).read_text())["kind"] == "prior"
    assert load_prior(folder).config == our_config(kind, "ci")
    with safe_open(str(folder / WEIGHTS_FILE), "pt") as f:
        assert f.metadata() == {"format": "pt", "source": "prior_level_x.pth.tar", "step": "7"}
    assert_logits_match(ref, folder)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_fp16_conv_weights_are_kept_and_upcast_on_load(legacy, tmp_path):
    from jukebox_infer.transformer.ops import _convert_conv_weights_to_fp16

    ref = build_reference("5b_lyrics", "ci")
    ref.apply(_convert_conv_weights_to_fp16)  # what fp16_params=True did to the released 5b tops
    path = save_released(ref, tmp_path / "prior_level_2.pth.tar", released_hps("5b_lyrics", fp16_params=True), legacy)
    folder = import_prior(path, tmp_path / "ours", progress=False)
    with safe_open(str(folder / WEIGHTS_FILE), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
    assert dtypes["prior.transformer.layers.0.attn.in_proj.weight"] == "F16"
    assert dtypes["lyrics_proj.weight"] == "F16"
    assert dtypes["prior.transformer.layers.0.attn.in_proj.bias"] == "F32"
    assert dtypes["prior.x_emb.weight"] == "F32"
    assert set(dtypes.values()) == {"F16", "F32"}
    assert_logits_match(ref, folder)  # the original computes with the fp16 weights cast to fp32: same numbers


def test_missing_hps_values_come_from_shapes_and_the_preset(tmp_path):
    ref = build_reference("5b", "ci")
    shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    config = prior_config_from_original(tmp_path / "prior_level_2.pth.tar", {}, shapes)
    assert (config.width, config.depth, config.n_ctx) == (64, 3, 128)  # from the shapes
    assert (config.heads, config.blocks, config.attn_order, config.merged_decoder) == (8, 128, 2, True)  # 5b preset
    assert config.labels.min_duration == 60.0 and config.labels.ids == "v2"
    # hps saved without the VQ-VAE's (jukebox's defaults: a 2-level VQ-VAE with 512 codes) do not describe this
    # prior's VQ-VAE: the geometry comes from the preset, while the prior's own values come from hps.
    from jukebox_infer.hparams import setup_hparams

    prior_only = dict(setup_hparams("prior_5b", dict(SIZES["ci"]["5b"], restore_prior="")))
    assert (prior_only["levels"], prior_only["l_bins"]) == (2, 512)
    config = prior_config_from_original(tmp_path / "prior_level_2.pth.tar", prior_only, shapes)
    assert (config.levels, config.downs_t, config.strides_t, config.blocks) == (3, (3, 2, 2), (2, 2, 2), 8)

    merged = {k: tuple(v.shape) for k, v in build_reference("1b_lyrics", "ci").state_dict().items()}
    with pytest.raises(OpenJukeboxError, match="128 positions, too few for n_ctx=-256 music tokens"):
        prior_config_from_original(tmp_path / "prior_level_2.pth.tar", {}, merged)  # 1b_lyrics: 384 lyric tokens
    config = prior_config_from_original(tmp_path / "prior_level_2.pth.tar", {"n_ctx": 96}, merged)
    assert (config.n_ctx, config.n_tokens, config.lyrics.n_vocab, config.bins) == (96, 32, 79, 2048)

    up = {k: tuple(v.shape) for k, v in build_reference("upsampler_level_1", "ci").state_dict().items()}
    with pytest.raises(OpenJukeboxError, match="pass --preset upsampler_level_0 or upsampler_level_1"):
        prior_config_from_original(tmp_path / "upsampler.pth.tar", {}, up)
    by_name = prior_config_from_original(tmp_path / "prior_level_1.pth.tar", {}, up)
    assert by_name.level == 1 and by_name.conditioner.res_scale is True
    by_preset = prior_config_from_original(tmp_path / "upsampler.pth.tar", {}, up, preset="upsampler_level_0")
    assert by_preset.level == 0 and by_preset.conditioner.res_scale is False
    with pytest.raises(OpenJukeboxError, match="hps level=1 but preset 'upsampler_level_0' is a level-0 prior"):
        prior_config_from_original(tmp_path / "x.pth.tar", {"level": 1}, up, preset="upsampler_level_0")
    with pytest.raises(OpenJukeboxError, match="not an official prior preset"):
        prior_config_from_original(tmp_path / "x.pth.tar", {}, up, preset="tiny")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            dict(prior_width=128),
            r"hps prior_width=128 contradicts the weights, which have prior_width=64 \(prior.x_emb",
        ),
        (dict(prior_depth=4), r"hps prior_depth=4 contradicts the weights, which have prior_depth=19"),
        (dict(n_tokens=64), r"n_tokens=64 contradicts the weights, which have n_tokens=32 \(prime_prior.pos_emb"),
        (dict(y_bins=(10, 100)), r"hps y_bins=\(10, 100\) contradicts the weights, which have y_bins=\(120, 4111\)"),
        (dict(heads=5), r"do not describe a valid prior"),
    ],
)
def test_hps_contradicting_the_weights_is_one_line_error(override, message, tmp_path):
    ref = build_reference("5b_lyrics", "ci")
    path = save_released(ref, tmp_path / "p.pth.tar", {**released_hps("5b_lyrics"), **override})
    with pytest.raises(OpenJukeboxError, match=message) as info:
        import_prior(path, tmp_path / "ours", progress=False)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not (tmp_path / "ours" / CONFIG_FILE).exists() and not (tmp_path / "ours" / WEIGHTS_FILE).exists()


def test_reimport_replaces_an_earlier_import(tmp_path):
    folder = tmp_path / "ours"
    first = build_reference("upsampler_level_0", "ci", seed=1)
    import_prior(
        save_released(first, tmp_path / "a.pth.tar", released_hps("upsampler_level_0")), folder, progress=False
    )
    second = build_reference("5b", "ci", seed=2)
    import_prior(save_released(second, tmp_path / "b.pth.tar", released_hps("5b")), folder, progress=False)
    assert load_prior(folder).config.level == 2
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temporary files left
    assert_logits_match(second, folder)


def test_missing_tensor_is_named(tmp_path):
    ref = build_reference("5b", "ci")
    state = ref.state_dict()
    del state["prior.transformer._attn_mods.1.mlp.c_fc.w"]
    path = tmp_path / "p.pth.tar"
    torch.save({"hps": released_hps("5b"), "model": state, "step": 0}, path)
    with pytest.raises(OpenJukeboxError, match=r"1 missing, 0 unexpected; missing prior.transformer.layers.1.mlp.fc"):
        import_prior(path, tmp_path / "ours", progress=False)


def test_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ref = build_reference("5b", "ci")
    path = tmp_path / "prior_level_2.pth.tar"
    torch.save({"hps": Evil(), "model": ref.state_dict(), "step": 0}, path)
    assert original_kind(path) == "prior"  # read from the names in the pickle, nothing built
    with pytest.raises(OpenJukeboxError, match=r"refused to load: it would run (io|builtins)\.open"):
        import_prior(path, tmp_path / "ours", progress=False)
    torch.save({"hps": Evil(), "model": {}}, path)
    with pytest.raises(OpenJukeboxError, match="refused to load"):
        original_kind(path)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_file_is_one_line_error(legacy, tmp_path):
    ref = build_reference("5b", "ci")
    whole = save_released(ref, tmp_path / "whole.pth.tar", released_hps("5b"), legacy)
    cut = tmp_path / "prior_level_2.pth.tar"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(OpenJukeboxError, match="truncated or damaged") as info:
        import_prior(cut, tmp_path / "ours", progress=False)
    assert "\n" not in str(info.value) and str(cut) in str(info.value)
    assert not (tmp_path / "ours" / CONFIG_FILE).exists()
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(OpenJukeboxError, match="not a PyTorch checkpoint"):
        original_kind(garbage)


def test_vqvae_given_as_a_prior_is_one_line_error_and_legacy_vqvae_imports(tmp_path):
    from reference_vqvae import TINY_HP, build_reference_vqvae, save_original_checkpoint

    reference = build_reference_vqvae(TINY_HP, seed=0)
    path = tmp_path / "vqvae.pth.tar"
    save_original_checkpoint(reference, path)
    assert original_kind(path) == "vqvae"
    with pytest.raises(OpenJukeboxError, match="a VQ-VAE checkpoint, not a prior"):
        import_prior(path, tmp_path / "ours", progress=False)
    # The VQ-VAE importer shares the loader, so a legacy-format vqvae.pth.tar imports too, to the same weights.
    legacy = tmp_path / "legacy_vqvae.pth.tar"
    torch.save(torch.load(path, weights_only=False), legacy, _use_new_zipfile_serialization=False)
    assert original_kind(legacy) == "vqvae"
    want, got = import_vqvae(path).state_dict(), import_vqvae(legacy).state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


_MEASURE = textwrap.dedent(
    """
    import json, os, sys, torch
    from openjukebox.checkpoints.original_prior import import_prior

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    with torch.device("meta"):  # torch's one-time lazy set-up of meta kernels (~70 MB), not the import's memory
        torch.empty(1).normal_()
    base = status("VmRSS")
    try:  # reset the high-water mark to the current RSS (else it may hold the imports' peak: conservative)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    import_prior(sys.argv[1], sys.argv[2], preset="1b_lyrics", progress=False)
    print(json.dumps({"growth": status("VmHWM") - base, "size": os.path.getsize(sys.argv[1])}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is measured through Linux /proc")
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_peak_memory_stays_within_1_3x_the_file(legacy, tmp_path):
    from jukebox_infer.transformer.ops import _convert_conv_weights_to_fp16

    # 1b_lyrics at the released widths (label tables, 6528 positions, 2048 wide), one layer in fp16: ~170 MB.
    ref = build_reference("1b_lyrics", "official", depth=1)
    ref.apply(_convert_conv_weights_to_fp16)
    path = save_released(ref, tmp_path / "prior_level_2.pth.tar", None, legacy)
    del ref
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(tmp_path / "ours")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["size"] > 150e6
    assert measured["growth"] <= 1.3 * measured["size"], measured
    with safe_open(str(tmp_path / "ours" / WEIGHTS_FILE), "pt") as f:
        assert f.get_slice("prior.pos_emb").get_shape() == [6528, 2048]
