#!/usr/bin/env bash
# The GPU checks of issue 6 (sampling) in one short device call: the CUDA-only tests, then the sampling benchmark
# of the released shapes (ours with the step replayed as a CUDA graph, ours launched op by op, the original).
#
# Here, on a machine with PyPI (once; the wheels are git-ignored and travel with `carry`):
#     scripts/gpu_check.sh wheels
# On the GPU machine (the device tool, whose image has torch but none of our audio or reference packages):
#     run(command="scripts/gpu_check.sh run", carry=[".whl"], timeout_s=580)
# Results land in $OUT (the device tool brings them back): pytest.log, bench.log, bench-sample-gpu.json (written
# after every case, so a run cut short keeps what it measured). BENCH_ARGS overrides the benchmark's options
# (default below: the smaller cases first, 128 tokens, 2 repeats). Building the models takes time of its own: the
# 1b_lyrics pair (both sides, fp32 on the host) took 22 s on 2 CPU cores; 5b_lyrics is ~5x larger. If the run is
# cut short, a second call with BENCH_ARGS="--cases 5b_lyrics --repeats 2 --tokens 128" and SKIP_TESTS=1 finishes.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(soundfile==0.14.0 cffi==2.0.0 pycparser==2.23 soxr==1.1.0 jukebox-infer==0.1.2 librosa==0.11.0 unidecode==1.4.0)

case "${1:-}" in
wheels)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "${WHEELS[@]}"
    ls -l .whl
    ;;
run)
    out="${OUT:-out/gpu}"
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
    python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' | tee -a "$out/gpu.txt"
    # The CUDA tests: graph replay vs the same step op by op (every attention kind, fp32 and bf16), graph vs eager
    # loop in fp32, mixed-precision training. Failures are reported, and the benchmark still runs.
    if [ -z "${SKIP_TESTS:-}" ]; then
        timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/prior/test_decode.py \
            tests/train/test_mixed_precision.py 2>&1 | tee "$out/pytest.log" || true
    fi
    # shellcheck disable=SC2086
    timeout 380 python3 bench/sample.py --device cuda --dtype bf16 --sides reference,ours,ours-eager \
        ${BENCH_ARGS:---cases 1b_lyrics,upsampler,5b_lyrics --repeats 2 --tokens 128} \
        --json "$out/bench-sample-gpu.json" 2>&1 | tee "$out/bench.log"
    ;;
*)
    echo "usage: scripts/gpu_check.sh wheels|run" >&2
    exit 2
    ;;
esac
