"""Reference priors: the original `SimplePrior` (from the test-only jukebox-infer package) beside ours.

`build_pair(kind, size)` builds the original prior of one of the five released kinds (`5b`, `5b_lyrics`,
`1b_lyrics`, `upsampler_level_1`, `upsampler_level_0`) with the original hyper-parameter set, shrunk by the
overrides of `size`, fills every parameter with seeded random values, converts its state dict through our
importer and loads it into our `Prior` built from the matching preset. `make_inputs` draws codes, upper-level
codes and a valid label vector. `build_hierarchy` and `reference_hierarchy` do the same for a whole hierarchy
(top 1b_lyrics prior and both upsamplers) and the original's window loop. Used by the parity tests and
`bench/prior.py`, `bench/sample.py`.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import replace
from types import SimpleNamespace

import torch

from openjukebox.prior import Prior, PriorConfig, convert_prior_state_dict, prior_preset

KINDS = ("5b", "5b_lyrics", "1b_lyrics", "upsampler_level_1", "upsampler_level_0")
_HPARAM_SET = {
    "5b": "prior_5b",
    "5b_lyrics": "prior_5b_lyrics",
    "1b_lyrics": "prior_1b_lyrics",
    "upsampler_level_1": "upsampler_level_1",
    "upsampler_level_0": "upsampler_level_0",
}

# Shapes, as overrides of the official hyper-parameters (original names). "ci": small widths with the official
# heads and schedules and enough depth for every layer kind; "official": the released widths, heads, contexts and
# schedules with the depth cut (`depth` argument); "full": everything as released.
SIZES: dict[str, dict[str, dict]] = {
    "ci": {
        "5b": dict(prior_width=64, prior_depth=3, n_ctx=128, blocks=8),
        "5b_lyrics": dict(
            prior_width=64,
            prior_depth=19,
            n_ctx=128,
            blocks=8,
            n_tokens=32,
            prime_width=32,
            prime_depth=3,
            prime_blocks=4,
        ),
        "1b_lyrics": dict(prior_width=64, prior_depth=16, n_ctx=96, blocks=4, n_tokens=32),
        "upsampler_level_1": dict(prior_width=32, prior_depth=3, n_ctx=128, blocks=8, cond_width=16, cond_depth=3),
        "upsampler_level_0": dict(prior_width=32, prior_depth=3, n_ctx=128, blocks=8, cond_width=16, cond_depth=3),
    },
    "official": {kind: {} for kind in KINDS},
}


def _fake_vqvae(n_ctx: int, level: int) -> SimpleNamespace:
    """What `make_prior` reads from a VQ-VAE: code shapes (for a window of n_ctx codes at `level`) and strides."""
    hops = (8, 32, 128)
    return SimpleNamespace(
        l_bins=2048,
        downs_t=(3, 2, 2),
        strides_t=(2, 2, 2),
        z_shapes=[(n_ctx * hops[level] // hop,) for hop in hops],
        encode=None,
        decode=None,
    )


def _our_config(kind: str, hp: dict) -> PriorConfig:
    """Our preset for `kind` with the same overrides."""
    config = prior_preset(kind)
    fields = {}
    for theirs, ours in (("prior_width", "width"), ("prior_depth", "depth"), ("n_ctx", "n_ctx"), ("blocks", "blocks")):
        if theirs in hp:
            fields[ours] = hp[theirs]
    if config.lyrics is not None:
        lyrics = config.lyrics
        if "n_tokens" in hp:
            lyrics = replace(lyrics, n_tokens=hp["n_tokens"])
        if lyrics.encoder is not None:
            enc = {k: hp[f"prime_{k}"] for k in ("width", "depth", "blocks") if f"prime_{k}" in hp}
            lyrics = replace(lyrics, encoder=replace(lyrics.encoder, **enc))
        fields["lyrics"] = lyrics
    if config.conditioner is not None:
        cond = {k: hp[f"cond_{k}"] for k in ("width", "depth") if f"cond_{k}" in hp}
        fields["conditioner"] = replace(config.conditioner, **cond)
    return replace(config, **fields)


def _randomise_(model: torch.nn.Module, seed: int) -> None:
    """Seeded random values everywhere (LayerNorm gains around 1), so no parameter hides behind its init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith(("ln_0.weight", "ln_1.weight", "ln.weight", "prime_state_ln.weight")):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.02 * noise)


def build_reference(kind: str, size: str = "ci", depth: int | None = None, seed: int = 0) -> torch.nn.Module:
    from jukebox_infer.hparams import setup_hparams
    from jukebox_infer.make_models import make_prior

    hp = dict(SIZES[size][kind])
    if depth is not None:
        hp["prior_depth"] = depth
    hps = setup_hparams(_HPARAM_SET[kind], dict(restore_prior="", fp16_params=False, **hp))
    ref = make_prior(hps, _fake_vqvae(hps.n_ctx, hps.level), device="cpu", auto_download=False)
    ref.train()  # the original's training path (q and k each scaled by d_head^-1/4)
    _randomise_(ref, seed)
    return ref


def our_config(kind: str, size: str = "ci", depth: int | None = None) -> PriorConfig:
    hp = dict(SIZES[size][kind])
    if depth is not None:
        hp["prior_depth"] = depth
    return _our_config(kind, hp)


def load_ours(config: PriorConfig, original_state: dict[str, torch.Tensor]) -> Prior:
    """Our prior holding the converted original weights, built without allocating a second random copy."""
    with torch.device("meta"):
        ours = Prior(config)
    ours.load_state_dict(convert_prior_state_dict(original_state), strict=True, assign=True)
    if not config.merged_decoder:  # assign=True replaced the shared Parameter: tie the output projection again
        ours.prior.x_out.weight = ours.prior.x_emb.weight
    return ours


def build_pair(kind: str, size: str = "ci", depth: int | None = None, seed: int = 0):
    """(original SimplePrior, our Prior with the same weights)."""
    ref = build_reference(kind, size, depth, seed)
    return ref, load_ours(our_config(kind, size, depth), ref.state_dict())


def make_inputs(config: PriorConfig, batch: int = 2, seed: int = 1) -> dict:
    """codes (B, n_ctx), upper (B, n_ctx / 4) or None, y (B, y_length): a valid label vector for `config`."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, config.bins, (batch, config.n_ctx), generator=g)
    upper = None
    if config.cond_downsample is not None:
        upper = torch.randint(0, config.bins, (batch, config.n_ctx // config.cond_downsample), generator=g)
    labels = config.labels
    sr = config.sample_rate
    total = torch.full((batch, 1), int(sr * (labels.min_duration or 60.0) * 1.5) + config.sample_length)
    offset = torch.randint(0, int(total[0, 0]) - config.sample_length, (batch, 1), generator=g)
    length = torch.full((batch, 1), config.sample_length)
    artist = torch.randint(0, labels.artist_bins, (batch, 1), generator=g)
    n_genres = labels.max_bow_genre_size
    genre = torch.randint(0, labels.genre_bins, (batch, n_genres), generator=g)
    if n_genres > 1:
        genre[:, math.ceil(n_genres / 2) :] = -1  # unused slots
    parts = [total, offset, length, artist, genre]
    if config.n_tokens:
        parts.append(torch.randint(0, config.lyrics.n_vocab, (batch, config.n_tokens), generator=g))
    return dict(codes=codes, upper=upper, y=torch.cat(parts, dim=1).long())


def reference_forward(ref: torch.nn.Module, inputs: dict) -> tuple[torch.Tensor, dict]:
    """The original's teacher-forced loss and metrics (with logits as metrics['preds']).

    Run one sample at a time: the original's lyric loss `view`s a slice of y, which only works for batches of 1
    (its released training used one sample per GPU). Every sample has the same number of tokens, so the batch
    losses are the means of the per-sample ones.
    """
    losses, metrics = [], []
    for i in range(inputs["codes"].shape[0]):
        z_conds = [inputs["upper"][i : i + 1]] if inputs["upper"] is not None else []
        loss, m = ref.z_forward(inputs["codes"][i : i + 1], z_conds=z_conds, y=inputs["y"][i : i + 1], get_preds=True)
        losses.append(loss)
        metrics.append(m)
    merged = {k: torch.stack([m[k] for m in metrics]).mean(0) for k in ("gen_loss", "prime_loss")}
    merged["preds"] = torch.cat([m["preds"] for m in metrics])
    return torch.stack(losses).mean(0), merged


HIERARCHY_KINDS = {2: "1b_lyrics", 1: "upsampler_level_1", 0: "upsampler_level_0"}


def build_hierarchy(size: str = "ci"):
    """(the original's three priors, level -> SimplePrior; our `Pipeline` holding the same weights), CPU, eval."""
    from openjukebox.prior.labeller import Labeller
    from openjukebox.sample.cli import cached_window_sampler
    from openjukebox.sample.pipeline import Pipeline
    from openjukebox.vqvae import VQVAE
    from openjukebox.vqvae.config import PRESETS

    priors, refs = {}, {}
    with contextlib.redirect_stdout(io.StringIO()):  # the original prints a line per module it builds
        for level, kind in HIERARCHY_KINDS.items():
            refs[level] = build_reference(kind, size, seed=level).eval()
            priors[level] = load_ours(our_config(kind, size), refs[level].state_dict()).eval()
    with torch.device("meta"):  # sampling reads only the VQ-VAE's hop lengths and codebook size
        vqvae = VQVAE(PRESETS["official"])
    labellers = {level: Labeller(prior.config) for level, prior in priors.items()}
    return refs, Pipeline(vqvae, priors, labellers, cached_window_sampler)


def reference_hierarchy(
    refs: dict,
    batch: int,
    length: int,
    meta: dict,
    seed: int,
    zs: dict[int, torch.Tensor] | None = None,
    levels: tuple[int, ...] = (0, 1, 2),
    window_seeds: bool = True,
) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    """(codes per level, seconds per level) of a sample of `length` audio samples by the original's loop
    (`jukebox_infer.sample._sample`): ancestral by default; from the codes `zs` (level -> (B, n)) it continues them
    (all levels) or, with levels (0, 1), upsamples them. meta: the original's label dict (artist, genre, lyrics,
    total_length, offset).

    Its settings are our defaults (temperature 0.99, hop fractions 0.5 / 0.5 / 0.125, chunk sizes 32 / 32 / 16, at
    most 16 / 16 / 3 samples per call). With `window_seeds` the random numbers of each window and batch chunk come
    from the global generator seeded as our `Pipeline` seeds that window's (`window_seed`), where the original
    would go on with one stream: then the two must give the same codes at every level. Without, the original runs
    as it is, after `torch.manual_seed(seed)`: the codes of our `rng="original"` mode. The original needs a song
    at least one upsampler window long (it asserts the codes above cover the window).
    """
    import jukebox_infer.sample as js
    from jukebox_infer.hparams import Hyperparams

    from openjukebox.sample.pipeline import window_seed

    where: dict = {}
    seconds: dict[int, float] = {}
    single, level_loop = js.sample_single_window, js.sample_level

    def seeded_window(zs, labels, sampling_kwargs, level, prior, start, hps):
        where.update(level=level, start=start, chunk=0)
        return single(zs, labels, sampling_kwargs, level, prior, start, hps)

    def timed_level(zs, labels, sampling_kwargs, level, prior, total_length, hop_length, hps):
        t0 = time.perf_counter()
        zs = level_loop(zs, labels, sampling_kwargs, level, prior, total_length, hop_length, hps)
        seconds[level] = time.perf_counter() - t0
        return zs

    def seeded(prior_sample):
        def sample(*args, **kwargs):
            torch.manual_seed(window_seed(seed, where["level"], where["start"], where["chunk"]))
            where["chunk"] += 1
            return prior_sample(*args, **kwargs)

        return sample

    hps = Hyperparams(dict(n_samples=batch, sample_length=length, hop_fraction=[0.5, 0.5, 0.125]))
    labels = [refs[level].labeller.get_batch_labels([meta] * batch, "cpu") for level in (0, 1, 2)]
    upsampler = dict(temp=0.99, fp16=False, max_batch_size=16, chunk_size=32)
    kwargs = [dict(upsampler), dict(upsampler), dict(temp=0.99, fp16=False, max_batch_size=3, chunk_size=16)]
    start = [torch.zeros(batch, 0, dtype=torch.long) for _ in range(3)]
    codes = [start[level] if zs is None or level not in zs else zs[level].clone() for level in range(3)]
    js.sample_single_window, js.sample_level = seeded_window, timed_level
    for ref in refs.values():
        if window_seeds:
            ref.sample = seeded(type(ref).sample.__get__(ref))
    torch.manual_seed(seed)
    try:
        quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
        with quiet[0], quiet[1], torch.no_grad():
            priors = [refs[0], refs[1], refs[2]]
            codes = js._sample(codes, labels, kwargs, priors, list(levels), hps, torch.device("cpu"))
    finally:
        js.sample_single_window, js.sample_level = single, level_loop
        for ref in refs.values():
            ref.__dict__.pop("sample", None)
    return dict(enumerate(codes)), seconds
