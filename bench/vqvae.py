"""VQ-VAE speed benchmark (CPU or whatever torch uses by default): the original code vs ours.

    python bench/vqvae.py [--seconds 10] [--repeats 3] [--json OUT] [--sides reference]

Per side it times, on random weights with the official (released) hyper-parameters:
  - encode: raw audio -> codes of all three levels (what the original ``VQVAE.encode`` does);
  - decode: bottom-level (level 0, hop 8) codes -> audio with the level-0 decoder;
and reports the median seconds, seconds of audio per second, the conv FLOPs of each call
(multiply-adds x 2 of every Conv1d/ConvTranspose1d) and the FLOP rate next to this machine's fp32 matmul
rate. The reference side is jukebox-infer (test-only dependency, via ``tests/parity/reference_vqvae.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
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


def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _result(name: str, times: list[float], audio_s: float, flops: int, peak: float | None) -> dict:
    med = statistics.median(times)
    res = {
        "name": name,
        "median_s": med,
        "times_s": times,
        "audio_s": audio_s,
        "audio_s_per_s": audio_s / med,
        "conv_gflop": flops / 1e9,
        "gflop_per_s": flops / med / 1e9,
    }
    if peak:
        res["fraction_of_matmul"] = flops / med / peak
    return res


def _audio(seconds_audio: float, seed: int = 0) -> np.ndarray:
    # A multiple of the top hop, so every level and every side gets exact lengths.
    n = int(seconds_audio * SR) // TOP_HOP * TOP_HOP
    return np.random.default_rng(seed).uniform(-0.5, 0.5, size=(1, n)).astype(np.float32)


# --------------------------------------------------------------------------------------------- sides


def _reference_harness():
    path = str(REPO / "tests" / "parity")
    if path not in sys.path:
        sys.path.insert(0, path)
    import reference_vqvae

    return reference_vqvae


def time_reference(seconds_audio: float = 10.0, repeats: int = 3, peak: float | None = None) -> dict:
    """The original code (jukebox-infer) with OFFICIAL_HP and random weights."""
    ref = _reference_harness()
    model = ref.build_reference_vqvae(ref.OFFICIAL_HP, seed=0)
    audio = _audio(seconds_audio)
    audio_s = audio.shape[1] / SR

    with torch.inference_mode():
        zs = ref.reference_encode(model, audio)
        _, enc_times = _median_time(lambda: ref.reference_encode(model, audio), repeats)
        _, dec_times = _median_time(lambda: ref.reference_decode(model, zs, 0), repeats)

    # Conv FLOPs are linear in length for lengths that are multiples of the top hop: count on a short
    # input and scale.
    n_count = TOP_HOP * 256
    scale = audio.shape[1] / n_count

    def run_encode(m, n):
        m.encode(torch.zeros(1, n, 1))

    def run_decode(m, n):
        m.decode([torch.zeros(1, n // 8, dtype=torch.long)], start_level=0, end_level=1)

    enc_flops = int(count_conv_flops(model, n_count, run_encode) * scale)
    dec_flops = int(count_conv_flops(model, n_count, run_decode) * scale)
    return {
        "side": "reference (jukebox-infer 0.1.2)",
        "params": sum(p.numel() for p in model.parameters()),
        "encode_all_levels": _result("encode", enc_times, audio_s, enc_flops, peak),
        "decode_level0": _result("decode", dec_times, audio_s, dec_flops, peak),
    }


# ``ours`` goes here later: a ``time_ours(seconds_audio, repeats, peak)`` returning the same dict layout.
SIDES: dict[str, Callable[..., dict]] = {"reference": time_reference}


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per call (median)")
    parser.add_argument("--json", type=Path, default=None, help="write all numbers to this file")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma list of {sorted(SIDES)}")
    parser.add_argument("--matmul-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    peak = measure_matmul_flops(args.matmul_seconds)
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
        "sides": {},
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul {peak / 1e9:.1f} GFLOP/s")
    for side in [s.strip() for s in args.sides.split(",") if s.strip()]:
        res = SIDES[side](seconds_audio=args.seconds, repeats=args.repeats, peak=peak)
        report["sides"][side] = res
        print(f"{res['side']}  ({res['params'] / 1e6:.2f} M params)")
        for key in ("encode_all_levels", "decode_level0"):
            r = res[key]
            print(
                f"  {key:18s} {r['median_s']:7.2f} s median of {len(r['times_s'])} "
                f"for {r['audio_s']:.2f} s audio = {r['audio_s_per_s']:6.2f} audio-s/s; "
                f"{r['conv_gflop']:7.1f} GFLOP conv, {r['gflop_per_s']:6.1f} GFLOP/s "
                f"({100 * r.get('fraction_of_matmul', 0):.0f}% of matmul)"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
