"""Parity of our VQ-VAE with the original code (jukebox-infer), through our importer of released checkpoints.

The reference is built with seeded random weights and codebooks, saved exactly like a released
`vqvae.pth.tar`, converted by `openjukebox import`, and both models then encode and decode the same audio:
codes must be identical and reconstructions within 1e-4 (fp32). Tiny shapes here; the official shapes in
the `slow` test.
"""

import numpy as np
import pytest
import torch
from reference_vqvae import (
    OFFICIAL_HP,
    TINY_ASYM_HP,
    TINY_HP,
    build_reference_vqvae,
    reference_decode,
    reference_encode,
    reference_loss,
    save_original_checkpoint,
)

from openjukebox.checkpoints.original import import_vqvae
from openjukebox.checkpoints.vqvae import load_vqvae
from openjukebox.cli import main
from openjukebox.vqvae.losses import vqvae_loss
from openjukebox.vqvae.model import encoder_input

SR = 44100
BANDWIDTH = {"l1": 0.1, "l2": 0.02, "spec": 50.0}


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    n = int(seconds * SR) // 128 * 128
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1375 * t)
    return (tone + 0.05 * rng.standard_normal((2, n))).astype(np.float32)


def _check_parity(hp, tmp_path, seconds: float, via_cli: bool = False):
    reference = build_reference_vqvae(hp, seed=1)
    ckpt = tmp_path / "vqvae.pth.tar"
    save_original_checkpoint(reference, ckpt)
    if via_cli:
        assert main(["import", str(ckpt), "-o", str(tmp_path / "ours")]) == 0
        ours = load_vqvae(tmp_path / "ours")
    else:
        ours = import_vqvae(ckpt)
    audio = _audio(seconds)
    ref_codes = reference_encode(reference, audio)
    our_codes = ours.encode(torch.from_numpy(audio), chunk_seconds=None)
    for level, (ref, mine) in enumerate(zip(ref_codes, our_codes, strict=True)):
        assert np.array_equal(ref, mine.numpy()), f"level {level}: codes differ"
        assert len(np.unique(ref)) > 8, "codes should be varied for the comparison to mean something"
    for level in range(3):
        ref = reference_decode(reference, ref_codes, level)
        mine = ours.decode(our_codes[level], level, chunk_seconds=None).numpy()
        assert ref.shape == mine.shape
        diff = np.abs(ref - mine).max()
        assert diff <= 1e-4, f"level {level}: max abs diff {diff}"
    return reference, ours, audio


@pytest.mark.parametrize("hp", [TINY_HP, TINY_ASYM_HP], ids=["tiny", "tiny_asym"])
def test_tiny_parity(hp, tmp_path):
    _check_parity(hp, tmp_path, seconds=1.0)


def test_import_through_cli_and_loss_parity(tmp_path):
    reference, ours, audio = _check_parity(TINY_ASYM_HP, tmp_path, seconds=0.5, via_cli=True)
    ref_loss, _ = reference_loss(reference, audio, BANDWIDTH)
    x = torch.from_numpy(audio)
    with torch.no_grad():
        out = ours(x)
        loss, _ = vqvae_loss(x, out.recons, out.commit_losses, ours.config.loss, BANDWIDTH)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5)


def test_official_shapes_encode_to_the_same_codes(tmp_path):
    """Codes only, 0.5 s (the slow test below also decodes). On AVX2 CPUs this caught the encoder's input laid
    out otherwise than the original's (`encoder_input`): 3 of 1376 level-1 and 8 of 344 level-2 codes differed."""
    reference = build_reference_vqvae(OFFICIAL_HP, seed=1)
    save_original_checkpoint(reference, tmp_path / "vqvae.pth.tar")
    ours = import_vqvae(tmp_path / "vqvae.pth.tar")
    audio = _audio(0.5)
    x = torch.from_numpy(audio)
    assert encoder_input(x).stride() == x[:, :, None].permute(0, 2, 1).stride()  # the original's layout
    for fast in (True, False):
        ours.fast_inference = fast
        for ref, mine in zip(reference_encode(reference, audio), ours.encode(x, chunk_seconds=None), strict=True):
            assert np.array_equal(ref, mine.numpy()), f"fast={fast}: {np.sum(ref != mine.numpy())} codes differ"


@pytest.mark.slow
def test_official_parity(tmp_path):
    _check_parity(OFFICIAL_HP, tmp_path, seconds=3.0)
