"""Peak memory and time of `import_prior` on a synthetic released-style checkpoint at the official widths.

    python bench/import_memory.py [--kind 5b] [--depth 3] [--fp16] [--formats zip,legacy] [--no-release] [--keep DIR]

The checkpoint is the original `SimplePrior` (jukebox-infer, test-only) of `--kind` at the released widths, heads,
contexts and label tables with the depth cut to `--depth` layers, randomised (tests/parity/reference_prior.py), with
`--fp16` its Conv1D weights in fp16 as in the released 5b tops, saved like jukebox's `save_checkpoint` in each of
`--formats` (zip: torch >= 1.6, memory-mapped; legacy: read whole). Each import runs in a fresh subprocess that
reports the growth of its peak RSS (Linux VmHWM, reset through /proc/self/clear_refs just before the import, after
torch's one-time meta-device set-up) over the file size, and the wall time. `--no-release` turns off the early
release of memory-mapped pages, to show what they would cost (they are clean file pages the kernel can reclaim, but
they count in RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "parity"))

_MEASURE = """
import json, sys, time, torch
from openjukebox.checkpoints import original_prior

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

if sys.argv[3] == "no-release":
    original_prior._PageReleaser.release = lambda self, tensor: None
with torch.device("meta"):
    torch.empty(1).normal_()
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
start = time.perf_counter()
original_prior.import_prior(sys.argv[1], sys.argv[2], progress=False)
print(json.dumps({"growth": status("VmHWM") - base, "seconds": time.perf_counter() - start}))
"""


def build_checkpoint(kind: str, depth: int, fp16: bool, path: Path, legacy: bool) -> None:
    import torch
    from jukebox_infer.hparams import setup_hparams
    from reference_prior import _HPARAM_SET, build_reference

    torch.cuda.LongTensor = torch.LongTensor  # the original's CPU check (see the parity tests)
    ref = build_reference(kind, "official", depth=depth)
    if fp16:
        from jukebox_infer.transformer.ops import _convert_conv_weights_to_fp16

        ref.apply(_convert_conv_weights_to_fp16)
    hps = dict(setup_hparams(f"vqvae,{_HPARAM_SET[kind]}", dict(restore_prior="", prior_depth=depth, fp16_params=fp16)))
    torch.save({"hps": hps, "model": ref.state_dict(), "step": 0}, path, _use_new_zipfile_serialization=not legacy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="5b")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--fp16", action="store_true", help="Conv1D weights in fp16 (as the released 5b tops)")
    parser.add_argument("--formats", default="zip,legacy")
    parser.add_argument("--no-release", action="store_true")
    parser.add_argument("--keep", type=Path, help="folder for the checkpoints (default: a temporary one)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="import_memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print(f"{'kind':<18} {'format':<7} {'file MB':>8} {'peak growth MB':>15} {'ratio':>6} {'seconds':>8}")
    for fmt in args.formats.split(","):
        path = folder / f"{args.kind}_d{args.depth}_{fmt}.pth.tar"
        if not path.exists():
            start = time.perf_counter()
            build_checkpoint(args.kind, args.depth, args.fp16, path, legacy=fmt == "legacy")
            print(f"(built {path.name} in {time.perf_counter() - start:.1f} s)", file=sys.stderr)
        mode = "no-release" if args.no_release else "release"
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(path), str(folder / f"out_{fmt}"), mode],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        size = path.stat().st_size
        print(
            f"{args.kind:<18} {fmt:<7} {size / 1e6:>8.0f} {result['growth'] / 1e6:>15.0f} "
            f"{result['growth'] / size:>6.2f} {result['seconds']:>8.2f}"
        )


if __name__ == "__main__":
    main()
