"""VQ-VAE speed and memory benchmark on CPU (or whatever torch uses by default): the original code vs ours.

    python bench/vqvae.py [--seconds 10] [--repeats 5] [--rss-minutes 1,10] [--json OUT] [--sides reference,ours]

Both sides get the same weights: the reference (jukebox-infer, test-only dependency, via
``tests/parity/reference_vqvae.py``) is built with seeded random weights and the official (released)
hyper-parameters, saved as an original ``vqvae.pth.tar`` and imported into ours with our importer. Per side:
  - encode: raw audio -> codes of all three levels (what the original ``VQVAE.encode`` does);
  - decode: bottom-level (level 0, hop 8) codes -> audio with the level-0 decoder.
Repeats alternate between the sides (so that a burst of load elsewhere on the machine hits both); the median
is reported, with seconds of audio per second, the conv FLOPs of each call (multiply-adds x 2 of every
Conv1d/ConvTranspose1d, counted on the modules), and the compute floor: those FLOPs at this machine's fp32
matmul rate. Ours is also reported as a speed ratio over the reference, and its codes and decoded audio
are compared with the reference's.

``--rss-minutes`` measures, for ours, in a fresh process per length, the peak resident memory (RSS sampled
every few ms) while encoding level 0 of that many minutes of audio and decoding it back: long audio is
processed in chunks, so the working memory should not grow with the length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
SR = 44100
TOP_HOP = 128  # official hop of the top level (8 * 4 * 4)


# --------------------------------------------------------------------------------------------- machine


def measure_matmul_flops(seconds: float = 2.0, n: int = 2048) -> float:
    """fp32 FLOP/s of a large square matmul on torch's default threads: median over repeats that
    together take about ``seconds`` (after one warm-up). One n x n @ n x n matmul = 2 n^3 FLOPs."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    out = torch.empty(n, n)
    torch.matmul(a, b, out=out)  # warm-up
    rates = []
    deadline = time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        rates.append(2.0 * n**3 / (time.perf_counter() - t0))
    return statistics.median(rates)


def count_conv_flops(
    model: torch.nn.Module,
    input_len: int,
    run: Callable[[torch.nn.Module, int], object] | None = None,
    batch: int = 1,
) -> int:
    """Multiply-adds x 2 of every ``Conv1d``/``ConvTranspose1d`` in ``model`` (biases not counted),
    measured with forward hooks while running it once on an input of length ``input_len``.

    ``run(model, input_len)`` performs the forward pass to measure (e.g. an encode or a decode call);
    by default ``model(torch.zeros(batch, C, input_len))`` with C the first conv's ``in_channels``.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0]
        cin_per_group = module.in_channels // module.groups
        cout_per_group = module.out_channels // module.groups
        if isinstance(module, torch.nn.ConvTranspose1d):
            x = inputs[0]  # every input element meets (C_out / groups) * K weights
            n_in = x.shape[0] * x.shape[1] * x.shape[-1] if x.dim() == 3 else x.shape[0] * x.shape[-1]
            total += 2 * n_in * cout_per_group * k
        else:
            y = output  # every output element is a dot product of length (C_in / groups) * K
            total += 2 * y.numel() * cin_per_group * k

    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    if not convs:
        return 0
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        with torch.inference_mode():
            if run is None:
                model(torch.zeros(batch, convs[0].in_channels, input_len))
            else:
                run(model, input_len)
    finally:
        for h in handles:
            h.remove()
    return total


def _audio(seconds_audio: float, seed: int = 0) -> np.ndarray:
    # A multiple of the top hop, so every level and every side gets exact lengths.
    n = int(seconds_audio * SR) // TOP_HOP * TOP_HOP
    return np.random.default_rng(seed).uniform(-0.5, 0.5, size=(1, n)).astype(np.float32)


# --------------------------------------------------------------------------------------------- sides


@dataclass
class Side:
    """One implementation, ready to run on one piece of audio."""

    name: str
    params: int
    encode: Callable[[], list[np.ndarray]]  # codes of all levels, bottom first
    decode: Callable[[], np.ndarray]  # audio (N, T) from the level-0 codes of `encode`
    flops: Callable[[int], tuple[int, int]]  # conv FLOPs (encode, decode) for an input of n samples


def _reference_harness():
    path = str(REPO / "tests" / "parity")
    if path not in sys.path:
        sys.path.insert(0, path)
    import reference_vqvae

    return reference_vqvae


@cache
def _reference_model() -> torch.nn.Module:
    """The original code (jukebox-infer) with OFFICIAL_HP and seeded random weights; shared by both sides."""
    ref = _reference_harness()
    return ref.build_reference_vqvae(ref.OFFICIAL_HP, seed=0)


def _flops_counter(model: torch.nn.Module, encode_call, decode_call) -> Callable[[int], tuple[int, int]]:
    def flops(n_samples: int) -> tuple[int, int]:
        # Linear in length for multiples of the top hop: count on a short input and scale.
        n_count = TOP_HOP * 256
        scale = n_samples / n_count
        enc = count_conv_flops(model, n_count, lambda m, n: encode_call(n))
        dec = count_conv_flops(model, n_count, lambda m, n: decode_call(n))
        return int(enc * scale), int(dec * scale)

    return flops


def reference_side(audio: np.ndarray) -> Side:
    ref = _reference_harness()
    model = _reference_model()
    codes: list[np.ndarray] = []

    def encode():
        codes[:] = ref.reference_encode(model, audio)
        return codes

    return Side(
        name="reference (jukebox-infer 0.1.2)",
        params=sum(p.numel() for p in model.parameters()),
        encode=encode,
        decode=lambda: ref.reference_decode(model, codes, 0),
        flops=_flops_counter(
            model,
            lambda n: model.encode(torch.zeros(1, n, 1)),
            lambda n: model.decode([torch.zeros(1, n // 8, dtype=torch.long)], start_level=0, end_level=1),
        ),
    )


def ours_side(audio: np.ndarray) -> Side:
    from openjukebox.checkpoints.original import import_vqvae

    ref = _reference_harness()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "vqvae.pth.tar"
        ref.save_original_checkpoint(_reference_model(), ckpt)
        model = import_vqvae(ckpt).eval()
    x = torch.from_numpy(audio)
    codes: list[torch.Tensor] = []

    def encode():
        codes[:] = model.encode(x)
        return [z.numpy() for z in codes]

    def plain(call):  # FLOPs are counted with hooks on the modules, which the fast paths do not call
        def run(n):
            model.fast_inference = False
            try:
                call(n)
            finally:
                model.fast_inference = True

        return run

    return Side(
        name="ours (openjukebox)",
        params=sum(p.numel() for p in model.parameters()),
        encode=encode,
        decode=lambda: model.decode(codes[0], 0).numpy(),
        flops=_flops_counter(
            model,
            plain(lambda n: model.encode(torch.zeros(1, n))),
            plain(lambda n: model.decode(torch.zeros(1, n // 8, dtype=torch.long), 0)),
        ),
    )


SIDES: dict[str, Callable[[np.ndarray], Side]] = {"reference": reference_side, "ours": ours_side}


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_sides(names: list[str], seconds_audio: float, repeats: int, peak: float) -> dict:
    """Time every side on the same audio, repeats alternating between sides; medians and ratios."""
    audio = _audio(seconds_audio)
    audio_s = audio.shape[1] / SR
    sides = {name: SIDES[name](audio) for name in names}
    times: dict[str, dict[str, list[float]]] = {name: {"encode": [], "decode": []} for name in names}
    outputs: dict[str, dict[str, object]] = {name: {} for name in names}
    with torch.inference_mode():
        for side in sides.values():  # warm-up (and the codes the decode timings start from)
            side.encode()
            side.decode()
        for _ in range(repeats):
            for op in ("encode", "decode"):
                for name, side in sides.items():
                    seconds, outputs[name][op] = _timed(getattr(side, op))
                    times[name][op].append(seconds)

    report = {}
    for name, side in sides.items():
        enc_flops, dec_flops = side.flops(audio.shape[1])
        report[name] = {
            "side": side.name,
            "params": side.params,
            "encode_all_levels": _result(times[name]["encode"], audio_s, enc_flops, peak),
            "decode_level0": _result(times[name]["decode"], audio_s, dec_flops, peak),
        }
    if "reference" in sides:
        ref_out = outputs["reference"]
        for name in sides.keys() - {"reference"}:
            out = outputs[name]
            for key in ("encode_all_levels", "decode_level0"):
                r = report[name][key]
                r["speedup_vs_reference"] = report["reference"][key]["median_s"] / r["median_s"]
            report[name]["codes_identical"] = all(
                np.array_equal(a, b) for a, b in zip(ref_out["encode"], out["encode"], strict=True)
            )
            report[name]["decode_max_abs_diff"] = float(np.abs(ref_out["decode"] - out["decode"]).max())
    return report


def _result(times: list[float], audio_s: float, flops: int, peak: float) -> dict:
    med = statistics.median(times)
    floor_s = flops / peak
    return {
        "median_s": med,
        "times_s": times,
        "audio_s": audio_s,
        "audio_s_per_s": audio_s / med,
        "conv_gflop": flops / 1e9,
        "gflop_per_s": flops / med / 1e9,
        "floor_s": floor_s,
        "fraction_of_floor": floor_s / med,  # 1 = at the matmul rate; 0.5 = twice the floor
    }


# --------------------------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples this process's RSS every `interval` seconds in a thread; `.peak` is the highest seen."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak = interval, _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def rss_worker(minutes: float) -> dict:
    """In this (fresh) process: peak RSS while encoding level 0 of `minutes` of audio and decoding it back."""
    from openjukebox.vqvae import VQVAE, get_preset

    torch.manual_seed(0)
    model = VQVAE(get_preset("official")).eval()  # memory does not depend on the weights
    for codebook in model.codebooks:
        codebook.embed.normal_(std=0.3)
    audio = torch.from_numpy(_audio(minutes * 60))
    mb = 1 << 20
    baseline = _rss_bytes()
    t0 = time.perf_counter()
    with _PeakRSS() as enc:
        codes = model.encode(audio, levels=[0])[0]
    t1 = time.perf_counter()
    with _PeakRSS() as dec:
        out = model.decode(codes, 0)
    t2 = time.perf_counter()
    codes_mb, out_mb = codes.numel() * codes.element_size() / mb, out.numel() * out.element_size() / mb
    return {
        "minutes": minutes,
        "baseline_mb": baseline / mb,  # interpreter + torch + model + the input audio
        "audio_mb": audio.numel() * 4 / mb,  # the input; the decoded output is as large
        "encode_peak_mb": enc.peak / mb,
        "decode_peak_mb": dec.peak / mb,
        # above the baseline, less the results (which grow with the song): what chunking keeps flat
        "encode_working_mb": (enc.peak - baseline) / mb - codes_mb,
        "decode_working_mb": (dec.peak - baseline) / mb - codes_mb - out_mb,
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "output_samples": out.shape[1],
    }


def measure_rss(minutes: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-worker", str(minutes)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per call (median)")
    parser.add_argument("--json", type=Path, default=None, help="write all numbers to this file")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma list of {sorted(SIDES)}")
    parser.add_argument("--matmul-seconds", type=float, default=2.0)
    parser.add_argument("--rss-minutes", default="1,10", help="comma list of song lengths for ours' RSS ('' = skip)")
    parser.add_argument("--rss-worker", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_worker is not None:
        res = rss_worker(args.rss_worker)
        print(json.dumps(res))
        return res

    peak = measure_matmul_flops(args.matmul_seconds)
    names = [s.strip() for s in args.sides.split(",") if s.strip()]
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "matmul_gflop_per_s": peak / 1e9,
        },
        "seconds": args.seconds,
        "repeats": args.repeats,
        "sides": run_sides(names, args.seconds, args.repeats, peak),
        "rss": [measure_rss(float(m)) for m in args.rss_minutes.split(",") if m.strip()],
    }
    _print(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


def _print(report: dict) -> None:
    m = report["machine"]
    print(f"torch {m['torch']}, {m['threads']} threads, fp32 matmul {m['matmul_gflop_per_s']:.1f} GFLOP/s")
    for res in report["sides"].values():
        print(f"{res['side']}  ({res['params'] / 1e6:.2f} M params)")
        for key in ("encode_all_levels", "decode_level0"):
            r = res[key]
            ratio = f", {r['speedup_vs_reference']:.2f}x reference" if "speedup_vs_reference" in r else ""
            print(
                f"  {key:18s} {r['median_s']:6.2f} s median of {len(r['times_s'])} "
                f"for {r['audio_s']:.2f} s audio = {r['audio_s_per_s']:6.2f} audio-s/s{ratio}; "
                f"{r['conv_gflop']:6.1f} GFLOP conv, {r['gflop_per_s']:6.1f} GFLOP/s, "
                f"floor {r['floor_s']:.2f} s ({r['median_s'] / r['floor_s']:.2f}x floor)"
            )
        if "codes_identical" in res:
            print(
                f"  codes identical to the reference: {res['codes_identical']}; "
                f"decode max |diff| {res['decode_max_abs_diff']:.1e}"
            )
    for r in report["rss"]:
        print(
            f"ours, {r['minutes']:g} min song, level 0: peak RSS encode {r['encode_peak_mb']:.0f} MB, "
            f"decode {r['decode_peak_mb']:.0f} MB (baseline {r['baseline_mb']:.0f} MB incl. "
            f"{r['audio_mb']:.0f} MB input audio); working memory less results: encode "
            f"{r['encode_working_mb']:.0f} MB, decode {r['decode_working_mb']:.0f} MB; "
            f"encode {r['encode_s']:.0f} s, decode {r['decode_s']:.0f} s"
        )


if __name__ == "__main__":
    main()
