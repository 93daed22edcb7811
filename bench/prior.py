"""Prior training speed: forward + backward tokens/s of ours vs the original code, same weights, same process.

    python bench/prior.py [--kinds small,5b,...] [--depth 3] [--n-ctx 1024] [--repeats 5] [--json OUT]
    python bench/prior.py --quick                                  # every code path in well under a minute
    python bench/prior.py --device cuda --dtype bf16 --full-depth  # released shapes on a GPU, peak memory

What is timed: one teacher-forced training step without the optimiser, batch 1: `loss = forward(codes, upper, y)`
then `loss.backward()` (grads cleared before each step; on CUDA synchronised). Both sides train in train mode,
as the parity tests do; the reference is the original `SimplePrior.z_forward` (jukebox-infer, test-only
dependency). Both sides get the same weights: the official kinds come from `tests/parity/reference_prior.py`
`build_pair` (the original built from its own hyper-parameter sets, randomised, converted by our importer and
loaded into ours); `small` (ours) is built in the original from its `small_sep_enc_dec_prior` set with our
preset's values, since the original can express it. Repeats alternate between the sides (a burst of load elsewhere
hits both); the median is reported with music tokens/s (n_ctx / step time; the lyric tokens come on top),
ours/reference as a speed ratio, and the compute floor: the step's matmul FLOPs (torch `FlopCounterMode`, on the
reference where present) at this machine's measured matmul rate.

Shapes. `small` runs as its preset. The five official kinds keep the released width, heads, block length, lyric
window and conditioner; on the CPU their depth is cut (`--depth`, default 3; 5b_lyrics never below 19, the first
layer with cross-attention to the lyrics) and their context too (`--n-ctx`, default 1024 on the CPU, 0 = as
released), rounded to whole blocks of the released block length (1b_lyrics: blocks over [lyrics | music]).
At the released 8192-token context a 5b layer is ~3.4 TFLOP per step (a minute or more on a few CPU cores) and
5b_lyrics at depth 19 needs tens of GB of activations on top of its weights: more than a CPU run here affords.
`--full-depth` (meant for CUDA) builds the released shapes (ours only unless `--sides` says otherwise; the original
is built on the CPU first, 2 x the memory). Without the reference (`--sides ours`) ours is built alone, directly
on the device, with its own random init.
On CUDA, `--dtype bf16` runs under bf16 autocast with fp32 weights (as `train` does) and the table adds the peak
of `torch.cuda.max_memory_allocated` during the side's steps; an out-of-memory step is reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parent.parent
OFFICIAL = ("5b", "5b_lyrics", "1b_lyrics", "upsampler_level_1", "upsampler_level_0")
KINDS = ("small", *OFFICIAL)
MIN_DEPTH = {"5b_lyrics": 19}  # layer 18 is the first cross-attention layer of attn_order 10


def _harness():
    path = str(REPO / "tests" / "parity")
    if path not in sys.path:
        sys.path.insert(0, path)
    import reference_prior

    return reference_prior


@contextlib.contextmanager
def _quiet():
    """The original prints a line per module it builds."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# --------------------------------------------------------------------------------------------- machine


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """FLOP/s of a large square matmul in `dtype` on `device` (median over repeats after a warm-up)."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.matmul(a, b, out=out)
    rates = []
    deadline = time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < deadline:
        _sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        _sync(device)
        rates.append(2.0 * n**3 / (time.perf_counter() - t0))
    return statistics.median(rates)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------- models


def _block_rounded(kind: str, n_ctx: int) -> dict:
    """Original-name overrides (n_ctx, blocks) for a context near `n_ctx` with the released block length."""
    from openjukebox.prior import prior_preset

    config = prior_preset(kind)
    lyrics = config.n_tokens if config.merged else 0  # the merged prior's blocks run over [lyrics | music]
    block = (config.n_ctx + lyrics) // config.blocks
    blocks = max(2, round((n_ctx + lyrics) / block))
    return dict(n_ctx=blocks * block - lyrics, blocks=blocks)


def _small_pair(n_ctx: int | None = None, seed: int = 0):
    """(original SimplePrior, our Prior) for our `small` top prior (context cut to `n_ctx`), same weights."""
    from jukebox_infer.hparams import setup_hparams
    from jukebox_infer.make_models import make_prior

    from openjukebox.prior import Prior, convert_prior_state_dict, prior_preset

    rp = _harness()
    c = prior_preset("small")
    if n_ctx:
        block = c.n_ctx // c.blocks
        c = replace(c, n_ctx=n_ctx // block * block, blocks=n_ctx // block)
    lc, ly = c.labels, c.lyrics
    e = ly.encoder
    hp = dict(
        level=c.level,
        n_ctx=c.n_ctx,
        prior_width=c.width,
        prior_depth=c.depth,
        heads=c.heads,
        attn_order=c.attn_order,
        blocks=c.blocks,
        init_scale=c.init_scale,
        m_attn=c.m_attn,
        m_mlp=c.m_mlp,
        merged_decoder=c.merged_decoder,
        prime_width=e.width,
        prime_depth=e.depth,
        prime_heads=e.heads,
        prime_attn_order=e.attn_order,
        prime_blocks=e.blocks,
        prime_init_scale=e.init_scale,
        prime_m_attn=e.m_attn,
        prime_m_mlp=e.m_mlp,
        prime_loss_fraction=ly.loss_fraction,
        n_tokens=ly.n_tokens,
        n_vocab=ly.n_vocab,
        y_bins=(lc.genre_bins, lc.artist_bins),
        max_bow_genre_size=lc.max_bow_genre_size,
        t_bins=lc.t_bins,
        min_duration=lc.min_duration,
        max_duration=lc.max_duration,
        labels_v3=False,
        sr=c.sample_rate,
        restore_prior="",
        fp16_params=False,
    )
    hps = setup_hparams("small_sep_enc_dec_prior", hp)
    vqvae = rp._fake_vqvae(hps.n_ctx, hps.level)
    vqvae.l_bins = c.bins
    ref = make_prior(hps, vqvae, device="cpu", auto_download=False)
    ref.train()
    rp._randomise_(ref, seed)
    ours = Prior(c)
    ours.load_state_dict(convert_prior_state_dict(ref.state_dict()), strict=True)
    return ref, ours


def build(kind: str, depth: int | None, n_ctx: int | None, quick: bool, full_depth: bool, sides: list[str], device):
    """(reference or None, ours or None, our config): the sides asked for, in train mode on `device`, trainable."""
    rp = _harness()
    ref = ours = None
    with _quiet():
        if kind == "small":
            ref, ours = _small_pair(256 if quick else None)
        else:
            if quick:
                size, depth = "ci", None
            else:
                size = f"bench-{n_ctx or 'official'}"
                rp.SIZES.setdefault(size, {k: (_block_rounded(k, n_ctx) if n_ctx else {}) for k in OFFICIAL})
                depth = None if full_depth else max(depth or 3, MIN_DEPTH.get(kind, 0))
            if "reference" in sides:
                ref, ours = rp.build_pair(kind, size, depth)
            else:  # ours alone (weights do not matter for speed): built on the device, 5b has 5 B parameters
                from openjukebox.prior import Prior

                hp = dict(rp.SIZES[size][kind])
                if depth is not None:
                    hp["prior_depth"] = depth
                with torch.device(device):
                    ours = Prior(rp._our_config(kind, hp))
    config = ours.config
    if "reference" not in sides:
        ref = None
    if "ours" not in sides:
        ours = None
    for model in (ref, ours):
        if model is not None:
            model.to(device).train()
            model.requires_grad_(True)  # the original's make_prior freezes its parameters
    return ref, ours, config


# --------------------------------------------------------------------------------------------- steps


@dataclass
class Side:
    name: str
    step: Callable[[], torch.Tensor]  # one forward + backward; returns the (detached) loss
    model: torch.nn.Module
    times: list[float] = field(default_factory=list)
    error: str | None = None
    peak_bytes: int | None = None
    loss: float | None = None


def _steps(ref, ours, inputs: dict, autocast) -> dict[str, Side]:
    codes, upper, y = inputs["codes"], inputs["upper"], inputs["y"]
    sides = {}
    if ref is not None:

        def ref_step() -> torch.Tensor:
            ref.zero_grad(set_to_none=True)
            with autocast():
                loss, _ = ref.z_forward(codes, z_conds=[upper] if upper is not None else [], y=y)
            loss.backward()
            return loss.detach()

        sides["reference"] = Side("reference (jukebox-infer)", ref_step, ref)
    if ours is not None:

        def ours_step() -> torch.Tensor:
            ours.zero_grad(set_to_none=True)
            with autocast():
                loss = ours(codes, upper, y).loss
            loss.backward()
            return loss.detach()

        sides["ours"] = Side("ours (openjukebox)", ours_step, ours)
    return sides


def _run(side: Side, device: torch.device) -> None:
    """One timed step (errors, e.g. out of memory, end the side)."""
    if side.error is not None:
        return
    try:
        _sync(device)
        t0 = time.perf_counter()
        loss = side.step()
        _sync(device)
        side.times.append(time.perf_counter() - t0)
        side.loss = float(loss)
    except torch.cuda.OutOfMemoryError:
        side.error = "out of memory"
    except Exception as e:  # the original may not run in a mode (e.g. bf16 autocast)
        side.error = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    finally:
        side.model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _count_flops(side: Side) -> int | None:
    if side.error is not None:
        return None
    try:
        with FlopCounterMode(display=False) as counter:
            side.step()
        return int(counter.get_total_flops())
    except Exception:  # a count is a nicety
        return None
    finally:
        side.model.zero_grad(set_to_none=True)


def bench_kind(kind: str, args, device: torch.device, peak_flops: float) -> dict:
    dtype = {"fp32": None, "bf16": torch.bfloat16}[args.dtype]

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    t0 = time.perf_counter()
    ref, ours, config = build(kind, args.depth, args.n_ctx, args.quick, args.full_depth, args.sides, device)
    model = ours if ours is not None else ref
    build_s = time.perf_counter() - t0
    inputs = _harness().make_inputs(config, batch=1)
    inputs = {k: (v.to(device) if v is not None else None) for k, v in inputs.items()}
    sides = _steps(ref, ours, inputs, autocast)

    for side in sides.values():  # warm-up
        for _ in range(args.warmup):
            _run(side, device)
        side.times.clear()
    for _ in range(args.repeats):
        for side in sides.values():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _run(side, device)
            if device.type == "cuda" and side.error is None:
                side.peak_bytes = max(side.peak_bytes or 0, torch.cuda.max_memory_allocated(device))
    flops = None
    for name in ("reference", "ours"):  # the original's plain matmuls are counted most completely
        if name in sides and flops is None and not args.no_flops:
            flops = _count_flops(sides[name])

    c = config
    result = {
        "kind": kind,
        "width": c.width,
        "depth": c.depth,
        "heads": c.heads,
        "n_ctx": c.n_ctx,
        "n_tokens": c.n_tokens,
        "blocks": c.blocks,
        "params": sum(p.numel() for p in model.parameters()),
        "build_s": build_s,
        "step_gflop": None if flops is None else flops / 1e9,
        "floor_s": None if flops is None else flops / peak_flops,
        "sides": {},
    }
    for name, side in sides.items():
        r: dict = {"side": side.name, "error": side.error, "times_s": side.times, "loss": side.loss}
        if side.times:
            med = statistics.median(side.times)
            r.update(median_s=med, tokens_per_s=c.n_ctx / med)
            if flops is not None:
                r.update(gflop_per_s=flops / med / 1e9, fraction_of_floor=flops / peak_flops / med)
        if side.peak_bytes is not None:
            # includes every model resident on the GPU (both sides' weights when both run)
            r["peak_memory_gib"] = side.peak_bytes / 2**30
            r["weights_gib"] = sum(p.numel() * p.element_size() for p in side.model.parameters()) / 2**30
        result["sides"][name] = r
    s = result["sides"]
    if "median_s" in s.get("ours", {}) and "median_s" in s.get("reference", {}):
        s["ours"]["speedup_vs_reference"] = s["reference"]["median_s"] / s["ours"]["median_s"]
        s["ours"]["loss_diff_vs_reference"] = abs(s["ours"]["loss"] - s["reference"]["loss"])
    del ref, ours, sides, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# --------------------------------------------------------------------------------------------- main


def _fmt_side(r: dict | None, cuda: bool) -> str:
    if r is None:
        return "-"
    if r.get("error"):
        return r["error"]
    text = f"{r['tokens_per_s']:.0f} tok/s ({r['median_s']:.2f} s)"
    if cuda and "peak_memory_gib" in r:
        text += f", {r['peak_memory_gib']:.1f} GiB"
    return text


def markdown(report: dict) -> str:
    cuda = report["machine"]["device"] == "cuda"
    lines = [
        "| prior | width x depth, heads | n_ctx (+ lyrics) | params | GFLOP / step | reference | ours "
        "| ours / reference | floor | ours vs floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in report["results"]:
        ref, ours = res["sides"].get("reference"), res["sides"].get("ours")
        ratio = f"**{ours['speedup_vs_reference']:.2f}x**" if ours and "speedup_vs_reference" in ours else "-"
        floor = "-" if res["floor_s"] is None else f"{res['n_ctx'] / res['floor_s']:.0f} tok/s"
        vs_floor = "-"
        if ours and "median_s" in ours and res["floor_s"]:
            vs_floor = f"{ours['median_s'] / res['floor_s']:.2f}x the floor"
        gflop = "-" if res["step_gflop"] is None else f"{res['step_gflop']:.3g}"
        lyrics = f" (+{res['n_tokens']})" if res["n_tokens"] else ""
        lines.append(
            f"| {res['kind']} | {res['width']} x {res['depth']}, {res['heads']} | {res['n_ctx']}{lyrics} "
            f"| {res['params'] / 1e6:.3g} M | {gflop} | {_fmt_side(ref, cuda)} | {_fmt_side(ours, cuda)} | {ratio} "
            f"| {floor} | {vs_floor} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    parser.add_argument("--sides", default=None, help="comma list of reference, ours (default both; ours alone "
                        "with --full-depth)")  # fmt: skip
    parser.add_argument("--depth", type=int, default=3, help="depth of the official kinds (5b_lyrics: >= 19)")
    parser.add_argument("--n-ctx", type=int, default=None, help="context of the official kinds, rounded to whole "
                        "blocks (default 1024 on the CPU, as released on CUDA; 0 = as released)")  # fmt: skip
    parser.add_argument("--full-depth", action="store_true", help="the official kinds at their released depth")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="bf16 = autocast (CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per side (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    parser.add_argument("--quick", action="store_true", help="small widths and contexts (the parity 'ci' shapes)")
    parser.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (one more step per kind)")
    parser.add_argument("--matmul-seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None, help="write all numbers to this file")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.dtype == "bf16" and args.device != "cuda":
        parser.error("--dtype bf16 is for --device cuda")
    if args.sides is None:
        args.sides = "ours" if args.full_depth else "reference,ours"
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.n_ctx is None:
        args.n_ctx = 1024 if args.device == "cpu" and not args.full_depth else 0
    if args.quick:
        args.repeats, args.warmup, args.matmul_seconds = min(args.repeats, 2), min(args.warmup, 1), 0.5
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown kind {k!r}; choose from {', '.join(KINDS)}")
    # The original asserts `isinstance(x, torch.cuda.LongTensor)`; on the CPU let CPU tensors pass.
    if args.device == "cpu":
        torch.cuda.LongTensor = torch.LongTensor

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    peak = measure_matmul_flops(device, dtype, args.matmul_seconds)
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(device) if args.device == "cuda" else None,
            "dtype": args.dtype,
            "matmul_gflop_per_s": peak / 1e9,
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [],
    }
    print(
        f"torch {torch.__version__}, {args.device}"
        + (f" ({report['machine']['gpu']})" if args.device == "cuda" else f", {torch.get_num_threads()} threads")
        + f", {args.dtype} matmul {peak / 1e9:.0f} GFLOP/s",
        flush=True,
    )
    for kind in kinds:
        res = bench_kind(kind, args, device, peak)
        report["results"].append(res)
        sides = ", ".join(f"{n} {_fmt_side(r, args.device == 'cuda')}" for n, r in res["sides"].items())
        diff = res["sides"].get("ours", {}).get("loss_diff_vs_reference")
        same = "" if diff is None else f"; |loss difference| {diff:.1e}"
        print(f"{kind}: {sides} (built in {res['build_s']:.0f} s{same})", flush=True)
    print()
    print(markdown(report))
    if args.json:
        from openjukebox.fileio import write_json_atomic

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, report)
    return report


if __name__ == "__main__":
    main()
