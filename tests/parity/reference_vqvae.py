"""Reference-side harness: the original Jukebox VQ-VAE (via the test-only ``jukebox-infer`` package).

Used by parity tests and by ``bench/vqvae.py``. Never import this from ``src/``.

Everything here runs on CPU with random weights drawn deterministically from a seed, because the
released weights cannot be downloaded in CI. The weights are drawn with an explicit
``torch.Generator`` (not the global RNG), so a given ``(hp, seed)`` always gives the same state dict,
independent of whatever else the test process did before.

Shapes follow the original API: audio goes in as (N, T) float32 here and is passed to the reference as
(N, T, 1) (NTC); codes come back bottom level first (level 0 = finest, hop 8 for the official model).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "OFFICIAL_HP",
    "TINY_ASYM_HP",
    "TINY_HP",
    "build_reference_vqvae",
    "loss_shims",
    "reference_decode",
    "reference_encode",
    "reference_hps",
    "reference_loss",
    "reference_state_dict",
    "save_original_checkpoint",
]

# The released `vqvae` hparam set (jukebox/hparams.py `vqvae` merged over DEFAULTS), architecture keys only.
OFFICIAL_HP: dict = {
    "sr": 44100,
    "levels": 3,
    "downs_t": (3, 2, 2),
    "strides_t": (2, 2, 2),
    "emb_width": 64,
    "l_bins": 2048,
    "l_mu": 0.99,
    "commit": 0.02,
    "width": 32,
    "depth": 4,
    "m_conv": 1.0,
    "dilation_growth_rate": 3,
    "dilation_cycle": None,
    "hvqvae_multipliers": (2, 1, 1),
    "vqvae_reverse_decoder_dilation": True,
    "sample_length": 1048576,
}

# Same topology (3 levels, hops 8/32/128) at a size that builds and runs in well under a second.
TINY_HP: dict = {
    **OFFICIAL_HP,
    "emb_width": 16,
    "l_bins": 64,
    "width": 16,
    "depth": 2,
    "hvqvae_multipliers": (1, 1, 1),
    "sample_length": 65536,
}

# Tiny, but with width != emb_width and non-trivial multipliers (level 0: width 16 = emb_width, depth 4;
# levels 1-2: width 8, depth 2), so channel mix-ups (width vs emb_width) and multiplier handling show up
# as shape errors or mismatches. TINY_HP has width == emb_width and cannot catch those.
TINY_ASYM_HP: dict = {
    **TINY_HP,
    "width": 8,
    "depth": 2,
    "hvqvae_multipliers": (2, 1, 1),
}

# Keys the original `save_checkpoint` drops from hps before saving (jukebox/make_models.py).
_UNSAVED_HPS = ("metadata_v2", "metadata_v3", "alignments", "lyric_processor", "midi_processor")


def reference_hps(hp: Mapping) -> dict:
    """The full hparam dict the original code would see: registry set ``vqvae`` + DEFAULTS + ``hp``.

    Unknown keys raise ``ValueError`` (jukebox's ``setup_hparams`` checks them against DEFAULTS).
    """
    from jukebox_infer.hparams import setup_hparams

    overrides = dict(hp)
    overrides.setdefault("restore_vqvae", "")  # never download
    return dict(setup_hparams("vqvae", overrides))


def _conv_modules(model: torch.nn.Module):
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            yield module


@torch.no_grad()
def _randomise_(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(int(seed))
    # Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default bound, where
    # fan_in = weight.shape[1] * kernel (for ConvTranspose1d that is out_channels * kernel, as in torch).
    for conv in _conv_modules(model):
        w = conv.weight
        bound = 1.0 / float(np.sqrt(w.shape[1] * w.shape[2]))
        w.copy_(torch.empty(w.shape).uniform_(-bound, bound, generator=gen))
        if conv.bias is not None:
            conv.bias.copy_(torch.empty(conv.bias.shape).uniform_(-bound, bound, generator=gen))

    # Codebooks: like the original's first-batch init (random encoder outputs), drawn from each level's
    # encoder output on a fixed noise probe, plus Gaussian noise of 0.3 x the per-channel std so that no
    # two codes coincide. This makes encoding use many codes (a zero or isotropic random codebook maps
    # almost everything to a handful of codes, which would make code-parity tests nearly vacuous).
    hop_top = int(model.hop_lengths[-1])
    probe = torch.empty(1, hop_top * 256, 1).uniform_(-0.5, 0.5, generator=gen)
    x_in = model.preprocess(probe)
    for level, block in enumerate(model.bottleneck.level_blocks):
        enc = model.encoders[level](x_in)[-1]  # (1, emb_width, T_level)
        flat = enc.permute(0, 2, 1).reshape(-1, enc.shape[1])
        n_bins = block.k.shape[0]
        reps = -(-n_bins // flat.shape[0])  # ceil
        pool = flat.repeat(reps, 1)
        rows = pool[torch.randperm(pool.shape[0], generator=gen)[:n_bins]]
        noise = torch.randn(rows.shape, generator=gen) * (0.3 * flat.std(dim=0, keepdim=True))
        block.k.copy_(rows + noise)
        # Mark the codebook as initialised (as after restoring a checkpoint): forward() will not re-init it.
        block.restore_k()


def build_reference_vqvae(hp: Mapping, seed: int) -> torch.nn.Module:
    """jukebox-infer's ``VQVAE`` on CPU in eval mode, with seeded random weights and codebooks.

    ``hp`` uses the original hparam names (see ``OFFICIAL_HP``); missing keys take the released
    ``vqvae`` values. The full hparam dict is kept on the module as ``model.reference_hps``.
    """
    from jukebox_infer.hparams import Hyperparams
    from jukebox_infer.make_models import make_vqvae

    hps = reference_hps(hp)
    with contextlib.redirect_stdout(io.StringIO()):  # make_vqvae prints "Loading vqvae in eval mode"
        model = make_vqvae(Hyperparams(hps), device="cpu", auto_download=False)
    model.eval()
    _randomise_(model, seed)
    model.reference_hps = hps
    return model


def reference_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict in the original checkpoint key layout (it is jukebox-infer's own
    ``state_dict()``: same module names as openai/jukebox), detached clones, in module order."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_original_checkpoint(model: torch.nn.Module, path: str | Path, hps: Mapping | None = None) -> None:
    """Write ``path`` the way the original ``save_checkpoint`` writes ``vqvae.pth.tar``:
    ``torch.save({'hps': dict, 'model': state_dict, 'opt': None, 'step': 0}, path)``.

    The original (jukebox/make_models.py ``save_checkpoint``) saves ``{'hps': {**hps} minus metadata keys,
    'model': model.state_dict(), 'opt': opt.state_dict() or None, 'step': logger.iters, **metrics}``
    and train.py passes ``metrics=dict(step=logger.iters)``, so the top-level keys are exactly
    hps/model/opt/step. ``model`` is the raw ``state_dict()`` (an OrderedDict with ``_metadata``).
    """
    if hps is None:
        hps = getattr(model, "reference_hps", None)
    if hps is None:
        raise ValueError("no hps given and the model was not built by build_reference_vqvae")
    save_hps = {k: v for k, v in dict(hps).items() if k not in _UNSAVED_HPS}
    torch.save({"hps": save_hps, "model": model.state_dict(), "opt": None, "step": 0}, str(path))


@torch.inference_mode()
def reference_encode(model: torch.nn.Module, audio: np.ndarray) -> list[np.ndarray]:
    """Codes of every level, bottom first: ``model.encode(x)`` with x (N, T, 1). Returns int64 arrays
    of shape (N, T // hop_length[level])."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"audio must be (N, T), got {tuple(x.shape)}")
    zs = model.encode(x[:, :, None], start_level=0, end_level=None, bs_chunks=1)
    return [z.cpu().numpy() for z in zs]


@torch.inference_mode()
def reference_decode(model: torch.nn.Module, zs: Sequence[np.ndarray] | np.ndarray, level: int) -> np.ndarray:
    """Audio (N, T) decoded from level ``level``'s codes with that level's own decoder.

    ``zs`` is either the full bottom-first list from ``reference_encode`` or just that level's codes.
    Calls ``model.decode([z], start_level=level, end_level=level + 1)``: the original then dequantises
    with ``bottleneck.level_blocks[level]`` and runs only ``decoders[level]`` (``all_levels=False``).
    """
    z = zs[level] if isinstance(zs, (list, tuple)) else zs
    z = torch.as_tensor(np.asarray(z)).long()
    if z.ndim != 2:
        raise ValueError(f"codes must be (N, T_level), got {tuple(z.shape)}")
    x = model.decode([z], start_level=level, end_level=level + 1, bs_chunks=1)  # (N, T, 1)
    return x[:, :, 0].float().cpu().numpy()


def _average_metrics(per_level: Sequence[Mapping]) -> dict:
    """Mean over levels of each bottleneck metric (empty in eval mode, where the bottleneck returns none)."""
    keys = {k for m in per_level for k in m}
    return {k: sum(m[k] for m in per_level if k in m) / sum(k in m for m in per_level) for k in keys}


@contextlib.contextmanager
def loss_shims():
    """Make jukebox-infer's ``VQVAE.forward`` (the training loss) run on torch >= 2. Two patches:

    - ``utils/audio_utils.py`` ``stft`` calls ``t.stft(sig, n_fft, hop, win_length=..., window=hann)``
      without ``return_complex``, which raises on current torch. Replaced by the same call with
      ``return_complex=True`` viewed as real (..., 2): exactly the old ``return_complex=False`` output
      (center=True, pad_mode='reflect', onesided, not normalised), so ``spec = norm(..., dim=-1)`` is
      the magnitude as in the original.
    - ``utils/logger.py`` ``average_metrics`` is a stub returning its list argument, which makes
      ``forward`` fail at ``dict(**quantiser_metrics)``; replaced by a per-key mean over levels.
    """
    from jukebox_infer.utils import audio_utils
    from jukebox_infer.vqvae import vqvae as vqvae_module

    def _stft(sig, hps):
        window = torch.hann_window(hps.window_size, device=sig.device)
        out = torch.stft(sig, hps.n_fft, hps.hop_length, win_length=hps.window_size, window=window, return_complex=True)
        return torch.view_as_real(out)

    saved = (audio_utils.stft, vqvae_module.average_metrics)
    audio_utils.stft, vqvae_module.average_metrics = _stft, _average_metrics
    try:
        yield
    finally:
        audio_utils.stft, vqvae_module.average_metrics = saved


@torch.no_grad()
def reference_loss(
    model: torch.nn.Module,
    audio: np.ndarray,
    bandwidth: Mapping[str, float],
    hps: Mapping | None = None,
) -> tuple[float, dict[str, float]]:
    """The original training loss ``VQVAE.forward(x, hps, loss_fn=hps['loss_fn'])`` on audio (N, T),
    with dataset ``bandwidth`` = {'l1', 'l2', 'spec'} (the divisors from ``calculate_bandwidth``).

    Runs with the model in its current mode (eval: no codebook update, straight-through still applied).
    Returns (total loss, metrics as floats). ``hps`` defaults to the ones the model was built with.
    """
    from jukebox_infer.hparams import Hyperparams

    hps = Hyperparams(dict(getattr(model, "reference_hps", {}) if hps is None else hps))
    hps.bandwidth = dict(bandwidth)
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))[:, :, None]
    with loss_shims():
        _, loss, metrics = model(x, hps, loss_fn=hps.loss_fn)
    return float(loss), {k: float(v) for k, v in metrics.items()}
