#!/bin/bash
# The kernel checks that need a GPU, as one script for a lent CUDA machine (< 10 minutes):
#   1. the GPU kernel tests (pytest -m gpu tests/test_kernels_gpu.py, in a process of their own),
#   2. the interpreter tests as a sanity check of the same tree (tests/test_kernels.py),
#   3. the GPU benchmarks (benches/bench_kernels.py --device cuda) against e3nn, and
#      cuEquivariance / OpenEquivariance when ../shared/tools/gpu-peers.sh packed them into .peers/,
#   4. a Cormorant training step on the GPU (benches/bench_cormorant.py: the CG layers run the Triton
#      kernels' fused products there), 25 and 250 molecules.
# Results go to $OUT (default /tmp/so3net-gpu-results): env.txt, gpu_tests.txt, interpret_tests.txt, bench_gpu.txt,
# bench_cormorant_gpu.txt.
# usage (repository root): bash benches/gpu_all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/so3net-gpu-results}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
unset TRITON_INTERPRET

if [ -f .peers/cueq-site.tar.xz ]; then           # peers packed by ../shared/tools/gpu-peers.sh
  mkdir -p .peers/site && tar xJf .peers/cueq-site.tar.xz -C .peers/site
  export PYTHONPATH=$PWD/.peers/site:$PWD/.peers/oeq:$PYTHONPATH
fi

{ date; nvidia-smi; python3 - <<'PY'
import importlib, torch, triton
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
for name in ("e3nn", "cuequivariance_torch", "openequivariance"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as err:
        print(name, "unavailable:", type(err).__name__, err)
PY
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

timeout 270 python3 -m pytest -m gpu tests/test_kernels_gpu.py -q -rs -x --durations=10 -p no:cacheprovider \
  2>&1 | tee "$OUT/gpu_tests.txt"
timeout 60 python3 -m pytest tests/test_kernels.py -q -p no:cacheprovider 2>&1 | tail -3 | tee "$OUT/interpret_tests.txt"
timeout 240 python3 benches/bench_kernels.py --device cuda --repeats 20 2>&1 | tee "$OUT/bench_gpu.txt"
timeout 90 python3 benches/bench_cormorant.py --steps 5 --original-steps 0 2>&1 | tee "$OUT/bench_cormorant_gpu.txt"
echo "results in $OUT"
