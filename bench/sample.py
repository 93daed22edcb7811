"""Sampling speed: ours against the original code (jukebox-infer), same weights, same process, same seed.

    python bench/sample.py                    # CPU fp32: top-prior decode (tiny, small) and the tiny hierarchy
    python bench/sample.py --quick            # every code path in well under a minute
    python bench/sample.py --cases tiny --repeats 5 --threads 2 --json out.json
    python bench/sample.py --device cuda --dtype bf16   # released 5b_lyrics / 1b_lyrics at full depth (GPU)

Why: sampling is memory-bound. One decode step of a batch reads every transformer weight (and the output
projection) once, whatever the batch size, so the floor of a step is (weight bytes) / (memory bandwidth), and
tokens/s can be judged against B x bandwidth / weight bytes. The bandwidth is measured here (median of passes over
a buffer far larger than the caches: a read-only `sum` and a `copy_`; the floor uses the faster of the two). The
floor ignores the key/value cache reads and the compute, so it is optimistic, except for weights small enough to
stay in the CPU caches (the --quick shapes), which are read faster than from memory: there it bounds nothing.

What is timed (part a): one ancestral window of the top prior, `--tokens` new music tokens, batch 1 and 8.
Ours is `openjukebox.prior.sampling.sample_prior` (key/value cache, one token per step; on CUDA each window's
step replayed as a CUDA graph, and `--sides reference,ours,ours-eager` adds ours launched op by op); the
reference is the original `SimplePrior.sample` (its own cached sampler). Both draw from the same seed, and the
first timed repeat of every (case, batch) asserts the two give identical tokens (fp32, CPU). Only decode steps
count: each side records a time stamp after every sampled token (ours through its `progress` callback, the
original by wrapping the `get_range` iterator its sampling loop runs over), and the rate is (tokens after the
first) / (time from the first token to the last), so conditioning, the lyric prefill (1b_lyrics), cache set-up
and graph capture are left out. A short warm-up runs first; repeats alternate between the sides and the median
is reported, with the best run beside it (on a shared machine the best is the one least disturbed by other work).

A loaded machine distorts the small shapes badly with several threads (OpenMP workers waiting on a busy core):
the load average at the start is printed and recorded; `--threads 1` is the robust choice on a shared machine.

Cases:
- `tiny`: the original `prior_1b_lyrics` hyper-parameters with prior_width=256, prior_depth=4 (merged lyrics:
  a 384-token lyric prefix, then music), weights from `tests/parity/reference_prior.py` (`build_reference`,
  randomised, converted by our importer into our matching preset).
- `small`: the original's unlabelled `small_prior` set (width 1024, depth 48, heads 1, attn_order 2, 64 blocks,
  n_ctx 8192, 162 M parameters), built with level=2, labels=False; ours is the matching `PriorConfig`.
- `5b_lyrics`, `1b_lyrics`, `upsampler` (GPU): the released shapes at full depth (`upsampler`: the released
  upsampler_level_0, conditioned on random codes of the level above; level 1's has the same shape). With a top
  prior and `upsampler` both measured, the minutes for 60 s of audio at all three levels are estimated from the
  batch-1 decode rates (tokens per level / rate; the windows' priming and conditioning come on top). The
  reference runs its own fp16 path (fp16 weights as `fp16_params` converts them, `sample(fp16=True)`); ours runs
  with its weights cast to `--dtype`. Peak memory is `torch.cuda.max_memory_allocated` while a side samples (one
  side on the GPU at a time); the floor counts our weight bytes at `--dtype` against the measured HBM bandwidth.
  Half precision is accepted on the CPU too (slow, tokens compared but not asserted: the two sides round
  differently), to exercise that code path without a GPU. With --quick these cases use the small parity ("ci")
  shapes.

Part b: a whole hierarchy (the released 1b_lyrics top prior and both upsamplers with their heads and layer
schedules, width 256 x depth 4, upsampler context 2048; `--quick`: the parity "ci" shapes), the original's three
`SimplePrior`s with random weights and our `Pipeline` holding the same weights (our importer), an ancestral sample
of `--hierarchy-seconds` of audio (default 2 s of a 20 s song) with the default per-level settings (temperature
0.99, hops 1/8 at the top and 1/2 below). The reference is the original's window loop
(`jukebox_infer.sample._sample`, through `tests/parity/reference_prior.py` `reference_hierarchy`) with each
window's random numbers seeded as ours seeds them (ours seeds every window from the run seed, so that a run
resumes bit for bit; the original goes on with one stream): the two must then give the same codes at every level
(asserted). Timed: seconds per level and in all, codes only (the VQ-VAE is not run), after an untimed warm-up
one upsampler window long (the shortest song the original can sample); repeats alternate, median.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
CPU_CASES = ("tiny", "small")
GPU_CASES = ("5b_lyrics", "1b_lyrics", "upsampler")  # upsampler: the released upsampler_level_0 shape
ALL_CASES = (*CPU_CASES, *GPU_CASES, "hierarchy")
SEED = 1234
CHUNK = 32  # prefill chunk (lyric prefix of 1b_lyrics), not timed


def _harness():
    path = str(REPO / "tests" / "parity")
    if path not in sys.path:
        sys.path.insert(0, path)
    import reference_prior

    return reference_prior


@contextlib.contextmanager
def _quiet():
    """The original prints a line per module it builds and per sample call; its progress bars go to stderr."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------- machine


def measure_bandwidth(device: torch.device, mib: int, seconds: float) -> dict:
    """Bytes/s of a read-only `sum` pass and of a `copy_` (read + write) over buffers of `mib` MiB, medians."""
    n = mib * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    out: dict = {"buffer_mib": mib}
    for name, op, moved in (("read", lambda: src.sum(), n * 4), ("copy", lambda: dst.copy_(src), 2 * n * 4)):
        op()
        rates = []
        deadline = time.perf_counter() + seconds
        while len(rates) < 5 or time.perf_counter() < deadline:
            _sync(device)
            t0 = time.perf_counter()
            op()
            _sync(device)
            rates.append(moved / (time.perf_counter() - t0))
        out[f"{name}_gb_per_s"] = statistics.median(rates) / 1e9
    out["floor_gb_per_s"] = max(out["read_gb_per_s"], out["copy_gb_per_s"])
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------------------------- models


@dataclass
class Pair:
    """The original prior and ours with the same weights, plus inputs: y (B_max, y_length) or None."""

    case: str
    ref: torch.nn.Module | None
    ours: torch.nn.Module
    y: torch.Tensor | None
    build_s: float
    upper: torch.Tensor | None = None  # (B_max, n_ctx / 4) codes of the level above (upsamplers)


def build_case(case: str, quick: bool, sides: list[str], max_batch: int) -> Pair:
    """Both sides on the CPU in fp32 and eval mode (the original samples in eval mode only)."""
    rp = _harness()
    t0 = time.perf_counter()
    with _quiet():
        if case == "small":
            from jukebox_infer.hparams import setup_hparams
            from jukebox_infer.make_models import make_prior

            from openjukebox.prior import PriorConfig

            shape = dict(n_ctx=8192, prior_width=1024, prior_depth=48)
            if quick:  # same layer kinds, fewer and narrower layers
                shape = dict(n_ctx=1024, prior_width=256, prior_depth=4)
            hps = setup_hparams(
                "small_prior", dict(restore_prior="", level=2, labels=False, fp16_params=False, **shape)
            )
            ref = make_prior(hps, rp._fake_vqvae(hps.n_ctx, 2), device="cpu", auto_download=False)
            rp._randomise_(ref, seed=0)
            config = PriorConfig(
                level=2,
                n_ctx=hps.n_ctx,
                width=hps.prior_width,
                depth=hps.prior_depth,
                heads=hps.heads,
                attn_order=hps.attn_order,
                blocks=hps.blocks,
                init_scale=hps.init_scale,
                m_attn=hps.m_attn,
                m_mlp=hps.m_mlp,
            )
            ours = rp.load_ours(config, ref.state_dict())
        else:
            if case == "tiny":
                size, kind, depth = "bench-sample-tiny", "1b_lyrics", None
                hp = dict(prior_width=256, prior_depth=4)
                if quick:  # the merged-lyrics layout on a short context
                    hp = dict(prior_width=64, prior_depth=2, n_ctx=1024, blocks=8, n_tokens=64)
                rp.SIZES[size] = {kind: hp}
            else:
                kind = "upsampler_level_0" if case == "upsampler" else case
                size, depth = ("ci", None) if quick else ("official", None)
            ref = rp.build_reference(kind, size, depth) if "reference" in sides else None
            if ref is not None:
                ours = rp.load_ours(rp.our_config(kind, size, depth), ref.state_dict())
            else:  # ours alone: weights do not matter for speed
                from openjukebox.prior import Prior

                ours = Prior(rp.our_config(kind, size, depth))
    if "reference" not in sides:
        ref = None
    ours.eval()
    if ref is not None:
        ref.eval()
    y = upper = None
    if ours.config.labels is not None:  # the released kinds: labels, and codes of the level above for upsamplers
        inputs = rp.make_inputs(ours.config, batch=max_batch)
        y, upper = inputs["y"], inputs["upper"]
    return Pair(case, ref, ours, y, time.perf_counter() - t0, upper)


def step_bytes(ours: torch.nn.Module, element_size: int) -> int:
    """Weight bytes one decode step reads: every transformer weight and the output projection (bins x width)."""
    p = ours.prior
    n = sum(t.numel() for t in p.transformer.parameters()) + p.input_bins * p.width
    return n * element_size


# --------------------------------------------------------------------------------------------- decoding


def sample_ours(
    ours,
    y,
    batch: int,
    tokens: int,
    seed: int,
    device: torch.device,
    upper: torch.Tensor | None = None,
    decode: str = "auto",
) -> tuple[torch.Tensor, list]:
    """(codes (B, tokens), time stamps after each sampled token); decode: the token loop (`sample_prior`)."""
    from openjukebox.prior.sampling import sample_prior

    stamps: list[float] = []

    def progress(done: int, total: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    generator = torch.Generator(device).manual_seed(seed)
    codes = sample_prior(
        ours, batch, upper=None if upper is None else upper[:batch].to(device),
        y=None if y is None else y[:batch].to(device), chunk_size=CHUNK, length=tokens,
        generator=generator, progress=progress, decode=decode,
    )  # fmt: skip
    return codes, stamps


def sample_reference(
    ref, y, batch: int, tokens: int, seed: int, device: torch.device, fp16: bool, upper: torch.Tensor | None = None
):
    """(codes (B, tokens), time stamps after each sampled token) of the original `SimplePrior.sample`."""
    import jukebox_infer.prior.autoregressive as ar

    loops: list[list[float]] = []

    def stamped(iterable):
        stamps: list[float] = []
        loops.append(stamps)
        for item in iterable:
            _sync(device)
            stamps.append(time.perf_counter())  # before step k = after step k - 1
            yield item
        _sync(device)
        stamps.append(time.perf_counter())

    original = ar.get_range
    ar.get_range = stamped
    try:
        torch.manual_seed(seed)
        with _quiet(), torch.no_grad():
            codes = ref.sample(
                batch, z_conds=None if upper is None else [upper[:batch].to(device)],
                y=None if y is None else y[:batch].to(device), fp16=fp16, temp=1.0, top_k=0, top_p=0.0,
                chunk_size=CHUNK, sample_tokens=tokens,
            )  # fmt: skip
    finally:
        ar.get_range = original
    return codes, loops[-1][1:]  # the last loop is the sampling one; drop the stamp before its first step


def decode_rate(stamps: list[float], batch: int) -> float:
    """Tokens/s over the steps after the first (all rows of the batch count)."""
    return batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])


@dataclass
class Side:
    name: str
    run: Callable[[int, int], tuple[torch.Tensor, list]]  # (batch, tokens) -> (codes, stamps)
    model: torch.nn.Module
    rates: list[float] = field(default_factory=list)
    error: str | None = None
    peak_bytes: int | None = None
    codes: torch.Tensor | None = None


def _attempt(side: Side, device: torch.device, batch: int, tokens: int, keep: bool) -> None:
    if side.error is not None:
        return
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        codes, stamps = side.run(batch, tokens)
        if device.type == "cuda":
            side.peak_bytes = max(side.peak_bytes or 0, torch.cuda.max_memory_allocated(device))
        if keep:
            side.rates.append(decode_rate(stamps, batch))
            if side.codes is None:
                side.codes = codes.cpu()
    except torch.cuda.OutOfMemoryError:
        side.error = "out of memory"
    except Exception as e:  # e.g. a mode the original does not run in; reported in the table
        side.error = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def bench_case(case: str, args, device: torch.device, bandwidth: float) -> list[dict]:
    cuda = device.type == "cuda"
    pair = build_case(case, args.quick, args.sides, max(args.batches))
    ours, ref = pair.ours, pair.ref
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    ref_fp16 = args.dtype != "fp32"
    if ref is not None and ref_fp16:  # the original's own half path: fp16 weights as fp16_params converts them
        from jukebox_infer.transformer.ops import _convert_conv_weights_to_fp16

        ref.apply(_convert_conv_weights_to_fp16)
    ours.to(dtype=dtype)
    tokens = args.tokens.get(case, args.tokens["default"])
    n_bytes = step_bytes(ours, torch.finfo(dtype).bits // 8)
    results = []
    for batch in args.batches:
        sides = [Side("ours", lambda b, n: sample_ours(ours, pair.y, b, n, SEED, device, pair.upper), ours)]
        if "ours-eager" in args.sides:  # our step launched op by op (what "ours" runs on the CPU anyway)
            run_eager = lambda b, n: sample_ours(ours, pair.y, b, n, SEED, device, pair.upper, "eager")  # noqa: E731
            sides.append(Side("ours-eager", run_eager, ours))
        if ref is not None:
            run_ref = lambda b, n: sample_reference(ref, pair.y, b, n, SEED, device, ref_fp16, pair.upper)  # noqa: E731
            sides.insert(0, Side("reference", run_ref, ref))
        # On a GPU one side at a time holds the device (our two loops share one model).
        groups = [sides]
        if cuda:
            theirs, our_loops = [s for s in sides if s.model is not ours], [s for s in sides if s.model is ours]
            groups = [g for g in (theirs, our_loops) if g]
        for group in groups:
            for s in group:
                s.model.to(device)
            for s in group:  # warm-up
                _attempt(s, device, batch, args.warmup_tokens, keep=False)
            for _ in range(args.repeats):
                for s in group:
                    _attempt(s, device, batch, tokens, keep=True)
            if cuda:
                for s in group:
                    s.model.to("cpu")
                torch.cuda.empty_cache()
        c = ours.config
        res: dict = {
            "case": case,
            "batch": batch,
            "tokens": tokens,
            "width": c.width,
            "depth": c.depth,
            "heads": c.heads,
            "n_ctx": c.n_ctx,
            "lyric_prefix": c.n_tokens if c.merged else 0,
            "params": sum(p.numel() for p in ours.parameters()),
            "step_bytes": n_bytes,
            "floor_tokens_per_s": batch * bandwidth / n_bytes,
            "build_s": pair.build_s,
            "sides": {},
        }
        for s in sides:
            r: dict = {"error": s.error, "tokens_per_s_runs": s.rates}
            if s.rates:
                rate = statistics.median(s.rates)
                r.update(
                    tokens_per_s=rate,
                    best_tokens_per_s=max(s.rates),
                    fraction_of_floor=rate / res["floor_tokens_per_s"],
                )
            if s.peak_bytes is not None:
                r["peak_memory_gib"] = s.peak_bytes / 2**30
            res["sides"][s.name] = r
        rs = res["sides"].get("reference", {})
        by_name = {s.name: s for s in sides}
        for name in ("ours", "ours-eager"):
            os_ = res["sides"].get(name, {})
            if "tokens_per_s" in rs and "tokens_per_s" in os_:
                os_["ratio_vs_reference"] = os_["tokens_per_s"] / rs["tokens_per_s"]
            pair_codes = [by_name[n].codes for n in ("reference", name) if n in by_name]
            if len(pair_codes) == 2 and all(c is not None for c in pair_codes):
                same = torch.equal(*pair_codes)
                if name == "ours":
                    res["identical_tokens"] = same
                else:
                    os_["identical_tokens"] = same
                if not cuda and not ref_fp16:  # fp32 on the CPU: the same seed must give the same codes
                    assert same, f"{case}, batch {batch}: {name} and the reference sampled different tokens"
        results.append(res)
        print(_line(res), flush=True)
    return results


def _fmt(r: dict | None) -> str:
    if not r:
        return "-"
    if r.get("error"):
        return r["error"]
    text = f"{r['tokens_per_s']:.1f} tok/s"
    if len(r["tokens_per_s_runs"]) > 1:
        text += f" (best {r['best_tokens_per_s']:.1f})"
    if "peak_memory_gib" in r:
        text += f", {r['peak_memory_gib']:.1f} GiB"
    return text


def _line(res: dict) -> str:
    s = res["sides"]
    same = {True: "identical tokens", False: "DIFFERENT tokens", None: "tokens not compared"}
    ratio = s["ours"].get("ratio_vs_reference")
    eager = s.get("ours-eager")
    return (
        f"{res['case']} batch {res['batch']}: reference {_fmt(s.get('reference'))}, ours {_fmt(s['ours'])}"
        + ("" if ratio is None else f" ({ratio:.2f}x)")
        + ("" if eager is None else f", ours-eager {_fmt(eager)}")
        + f"; floor {res['floor_tokens_per_s']:.1f} tok/s; {same[res.get('identical_tokens')]}"
    )


# --------------------------------------------------------------------------------------------- hierarchy


# The hierarchy of part b: the released kinds with their heads and schedules, cut narrower and shallower, and the
# upsamplers' context cut to 2048 (the original cannot sample a song shorter than one upsampler window: 1.5 s here,
# 5.9 s at the released 8192), so that a 2 s song spans several windows at levels 1 and 0.
_UPSAMPLER = dict(prior_width=256, prior_depth=4, n_ctx=2048, cond_width=128, cond_depth=2)
HIERARCHY_SHAPES = {
    "1b_lyrics": dict(prior_width=256, prior_depth=4),  # the `tiny` case of part a
    "upsampler_level_1": _UPSAMPLER,
    "upsampler_level_0": _UPSAMPLER,
}
# The song's labels (as the original's label dict; our `Song` has the same fields): a 20 s song, of which the first
# --hierarchy-seconds are sampled.
HIERARCHY_SONG = dict(
    artist="alan jackson", genre="country", lyrics="we sang about the sea " * 12, total_length=20 * 44100, offset=0
)


def hierarchy_ours(pipeline, batch: int, length: int) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    """(codes per level, seconds per level) of our ancestral sample of `length` audio samples."""
    from openjukebox.sample.pipeline import Song

    song = Song(**HIERARCHY_SONG)
    marks = {3: time.perf_counter()}
    zs = pipeline.ancestral_sample(
        song, batch, length, seed=SEED, on_level=lambda lv, _: marks.update({lv: time.perf_counter()})
    )
    return zs, {level: marks[level] - marks[level + 1] for level in (2, 1, 0)}


def bench_hierarchy(args, device: torch.device) -> dict:
    """Seconds of compute per second of audio for three levels, ours against the original loop (CPU, fp32)."""
    if device.type != "cpu":
        raise SystemExit("the hierarchy case runs on the CPU only (the original's loop, fp32)")
    rp = _harness()
    size = "ci" if args.quick else "bench-hierarchy"
    rp.SIZES.setdefault(size, HIERARCHY_SHAPES)
    refs, pipeline = rp.build_hierarchy(size)
    hops, top_hop = pipeline.vqvae.hop_lengths, pipeline.vqvae.hop_lengths[-1]
    shortest = max(prior.config.n_ctx * hops[level] for level, prior in pipeline.priors.items() if level < 2)
    shortest = -(-shortest // top_hop) * top_hop  # one window of each upsampler: the original needs that much
    length = round(args.hierarchy_seconds * 44100 / top_hop) * top_hop
    if length < shortest:
        raise SystemExit(f"--hierarchy-seconds: the original needs at least {shortest / 44100:.2f} s here")
    seconds = length / 44100
    batch = args.hierarchy_batch
    sides = {"ours": lambda n: hierarchy_ours(pipeline, batch, n)}
    if "reference" in args.sides:
        sides = {"reference": lambda n: rp.reference_hierarchy(refs, batch, n, HIERARCHY_SONG, SEED), **sides}
    runs: dict[str, list[dict[int, float]]] = {name: [] for name in sides}
    codes: dict[str, dict[int, torch.Tensor]] = {}
    for run in sides.values():
        run(shortest)  # warm-up, untimed
    for _ in range(args.hierarchy_repeats):
        for name, run in sides.items():
            zs, per_level = run(length)
            runs[name].append(per_level)
            codes.setdefault(name, zs)
    res: dict = {
        "audio_seconds": seconds,
        "batch": batch,
        "repeats": args.hierarchy_repeats,
        "shapes": "ci" if args.quick else HIERARCHY_SHAPES,
        "tokens": {level: length // pipeline.vqvae.hop_lengths[level] for level in (2, 1, 0)},
        "sides": {},
    }
    for name, side_runs in runs.items():
        med = {level: statistics.median(r[level] for r in side_runs) for level in (2, 1, 0)}
        total = statistics.median(sum(r.values()) for r in side_runs)
        res["sides"][name] = {"seconds": med, "total_seconds": total, "compute_per_audio_second": total / seconds}
    if "reference" in codes:
        res["identical_codes"] = same = all(torch.equal(codes["ours"][lv], codes["reference"][lv]) for lv in (2, 1, 0))
        assert same, "the hierarchy: ours and the original's loop sampled different codes"
        ours, ref = res["sides"]["ours"], res["sides"]["reference"]
        ours["ratio_vs_reference"] = ref["total_seconds"] / ours["total_seconds"]
    for name, r in res["sides"].items():
        per = ", ".join(f"level {lv} {r['seconds'][lv]:.2f} s" for lv in (2, 1, 0))
        ratio = f" ({r['ratio_vs_reference']:.2f}x)" if "ratio_vs_reference" in r else ""
        print(f"hierarchy {name} (batch {batch}, {seconds:.2f} s of audio): {per}; "
              f"{r['compute_per_audio_second']:.2f} s of compute per second of audio{ratio}", flush=True)  # fmt: skip
    return res


# --------------------------------------------------------------------------------------------- output


def minute_estimates(decode: list[dict]) -> list[dict]:
    """Minutes to sample 60 s of audio at every level, from the batch-1 decode rates of a top prior and of the
    upsampler (both upsamplers have the released upsampler_level_0 shape): tokens per level / tokens per second,
    summed. Decode only: the windows' priming and conditioning come on top."""
    rates = {r["case"]: r["sides"] for r in decode if r["batch"] == 1}
    if "upsampler" not in rates:
        return []
    tokens = {level: 60 * 44100 // hop for level, hop in ((2, 128), (1, 32), (0, 8))}
    out = []
    for top in ("5b_lyrics", "1b_lyrics", "tiny"):
        if top not in rates:
            continue
        est: dict = {"top": top, "tokens": tokens}
        for side in ("ours", "reference"):
            top_rate = rates[top].get(side, {}).get("tokens_per_s")
            up_rate = rates["upsampler"].get(side, {}).get("tokens_per_s")
            ok = top_rate and up_rate
            est[f"{side}_minutes"] = (tokens[2] / top_rate + (tokens[1] + tokens[0]) / up_rate) / 60 if ok else None
        out.append(est)
    return out


def markdown(report: dict) -> str:
    m = report["machine"]
    bw = m["bandwidth"]
    cuda = m["device"] == "cuda"
    where = m["gpu"] if cuda else f"{m['cpu']}, {m['threads']} threads"
    lines = [
        f"`{report['command']}`",
        "",
        f"{report['date']}, {where} (load average {m['load_average']:.1f} at start), torch {m['torch']}, "
        f"{m['dtype']}; measured bandwidth "
        f"{bw['read_gb_per_s']:.1f} GB/s read, {bw['copy_gb_per_s']:.1f} GB/s copy "
        f"({bw['buffer_mib']} MiB buffers); floor = B x {bw['floor_gb_per_s']:.1f} GB/s / weight bytes per step.",
        "",
    ]
    if report["decode"]:
        lines += [
            "| prior | width x depth, heads | params | batch | new tokens | reference | ours | ours / reference "
            "| floor | reference / floor | ours / floor | same tokens |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for res in report["decode"]:
            s = res["sides"]
            ref, ours = s.get("reference"), s["ours"]
            ratio = f"**{ours['ratio_vs_reference']:.2f}x**" if "ratio_vs_reference" in ours else "-"

            def frac(r):
                if not r or "fraction_of_floor" not in r:
                    return "-"
                f = r["fraction_of_floor"]
                return f"{f:.0%}" if f >= 0.1 else f"{f:.1%}"

            same = {True: "yes", False: "no", None: "-"}[res.get("identical_tokens")]
            lines.append(
                f"| {res['case']} | {res['width']} x {res['depth']}, {res['heads']} | {res['params'] / 1e6:.3g} M "
                f"| {res['batch']} | {res['tokens']} | {_fmt(ref)} | {_fmt(ours)} | {ratio} "
                f"| {res['floor_tokens_per_s']:.1f} tok/s | {frac(ref)} | {frac(ours)} | {same} |"
            )
    for res in report["decode"]:
        e = res["sides"].get("ours-eager")
        if e and "tokens_per_s" in e:
            ratio = f", {e['ratio_vs_reference']:.2f}x the reference" if "ratio_vs_reference" in e else ""
            lines += ["", f"{res['case']}, batch {res['batch']}, ours with the eager loop (the step launched op by "
                      f"op, no CUDA graph): {_fmt(e)}{ratio}, {e['fraction_of_floor']:.0%} of the floor."]  # fmt: skip
    for e in report.get("minute_estimates", []):
        ref = "-" if e["reference_minutes"] is None else f"{e['reference_minutes']:.1f} min"
        lines += ["", f"60 s of audio through all three levels with the {e['top']} top prior, from the batch-1 decode "
                  f"rates (decode only): ours {e['ours_minutes']:.1f} min, reference {ref}."]  # fmt: skip
    h = report.get("hierarchy")
    if h:
        lines += [
            "",
            "| whole hierarchy | batch | audio | tokens (levels 2 / 1 / 0) | side | level 2 | level 1 | level 0 "
            "| total | compute s / audio s | ours / reference | same codes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        same = {True: "yes", False: "no", None: "-"}[h.get("identical_codes")]
        for name, r in h["sides"].items():
            ratio = f"**{r['ratio_vs_reference']:.2f}x**" if "ratio_vs_reference" in r else "-"
            sec = r["seconds"]
            lines.append(
                f"| {'ci shapes' if h['shapes'] == 'ci' else 'width 256 x depth 4'} | {h['batch']} "
                f"| {h['audio_seconds']:.2f} s | {h['tokens'][2]} / {h['tokens'][1]} / {h['tokens'][0]} | {name} "
                f"| {sec[2]:.2f} s | {sec[1]:.2f} s | {sec[0]:.2f} s | {r['total_seconds']:.2f} s "
                f"| {r['compute_per_audio_second']:.2f} | {ratio} | {same} |"
            )
    return "\n".join(lines)


def _parse_tokens(text: str) -> dict:
    out = {"default": 128}
    for part in text.split(","):
        if "=" in part:
            case, n = part.split("=")
            out[case.strip()] = int(n)
        elif part.strip():
            out["default"] = int(part)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=None, help=f"comma list of {', '.join(ALL_CASES)} (default: "
                        f"{','.join(CPU_CASES)},hierarchy on the CPU, {','.join(GPU_CASES)} on CUDA)")  # fmt: skip
    parser.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    parser.add_argument("--tokens", default=None, help="new tokens per timed run: N or case=N,... "
                        "(default tiny=256,small=64; 256 on CUDA)")  # fmt: skip
    parser.add_argument("--warmup-tokens", type=int, default=8, help="tokens of the untimed run per side")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side (median; best shown too)")
    parser.add_argument("--sides", default="reference,ours", help="comma list of reference, ours, ours-eager "
                        "(ours with the step launched op by op instead of replayed as a CUDA graph)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default=None, choices=("fp32", "bf16", "fp16"),
                        help="default fp32 on the CPU, bf16 on CUDA (the reference runs its fp16 path)")  # fmt: skip
    parser.add_argument(
        "--bandwidth-mib", type=int, default=None, help="bandwidth buffer (default 1024 CPU, 4096 CUDA)"
    )
    parser.add_argument("--hierarchy-seconds", type=float, default=2.0, help="audio for part b (default 2 s)")
    parser.add_argument("--hierarchy-batch", type=int, default=1)
    parser.add_argument("--hierarchy-repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, every code path in under a minute")
    parser.add_argument("--json", type=Path, default=None, help="write all numbers to this file (atomically)")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.dtype is None:
        args.dtype = "bf16" if args.device == "cuda" else "fp32"
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if "ours" not in args.sides or not set(args.sides) <= {"ours", "reference", "ours-eager"}:
        parser.error("--sides: 'ours' and optionally 'reference', 'ours-eager'")
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batches {args.batches!r}: expected a comma list of integers")
    if args.cases is None:
        args.cases = ",".join(GPU_CASES) if args.device == "cuda" else ",".join((*CPU_CASES, "hierarchy"))
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in ALL_CASES:
            parser.error(f"--cases: unknown case {c!r}; choose from {', '.join(ALL_CASES)}")
    default_tokens = "256" if args.device == "cuda" else "tiny=256,small=64"
    try:
        args.tokens = _parse_tokens(args.tokens or default_tokens)
    except ValueError:
        parser.error(f"--tokens {args.tokens!r}: expected N or case=N,...")
    if args.quick:
        args.tokens = {"default": 24}
        args.repeats = min(args.repeats, 2)
        args.warmup_tokens = min(args.warmup_tokens, 4)
        args.hierarchy_seconds, args.hierarchy_repeats = min(args.hierarchy_seconds, 0.25), 1
    if min(args.tokens.values()) < 3 or args.repeats < 1 or min(args.batches) < 1:
        parser.error("need --tokens >= 3, --repeats >= 1 and batches >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # The original asserts `isinstance(x, torch.cuda.LongTensor)`; on the CPU let CPU tensors pass.
    if args.device == "cpu":
        torch.cuda.LongTensor = torch.LongTensor

    load = os.getloadavg()[0]  # before this script adds its own
    device = torch.device(args.device)
    mib = args.bandwidth_mib or (4096 if args.device == "cuda" else (256 if args.quick else 1024))
    bandwidth = measure_bandwidth(device, mib, 0.5 if args.quick else 2.0)
    command = "python bench/sample.py" + ("" if argv is None and len(sys.argv) < 2 else " ")
    command += " ".join(sys.argv[1:] if argv is None else argv)
    report: dict = {
        "command": command.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(device) if args.device == "cuda" else None,
            "dtype": args.dtype,
            "bandwidth": bandwidth,
            "load_average": load,
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "decode": [],
        "hierarchy": None,
        "minute_estimates": [],
    }
    print(
        f"torch {torch.__version__}, "
        + (
            report["machine"]["gpu"]
            if args.device == "cuda"
            else f"{report['machine']['cpu']}, {torch.get_num_threads()} threads"
        )
        + f", {args.dtype}; bandwidth {bandwidth['read_gb_per_s']:.1f} GB/s read, "
        f"{bandwidth['copy_gb_per_s']:.1f} GB/s copy ({mib} MiB); load average {load:.1f}",
        flush=True,
    )
    for case in cases:
        if case == "hierarchy":
            report["hierarchy"] = bench_hierarchy(args, device)
        else:
            report["decode"] += bench_case(case, args, device, bandwidth["floor_gb_per_s"] * 1e9)
        report["minute_estimates"] = minute_estimates(report["decode"])
        _save(args.json, report)  # after every case, so that a run stopped by a time limit keeps what it measured
    for e in report["minute_estimates"]:
        print(f"60 s of audio with the {e['top']} top prior, from batch-1 decode rates: {e['ours_minutes']:.1f} min "
              f"(ours), {e['reference_minutes'] or float('nan'):.1f} min (reference)", flush=True)  # fmt: skip
    print()
    print(markdown(report))
    return report


def _save(path: Path | None, report: dict) -> None:
    if path is not None:
        from openjukebox.fileio import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, report)


if __name__ == "__main__":
    main()
