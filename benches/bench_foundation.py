"""Foundation benchmarks: CG tables (cold and warm disk cache) and spherical harmonics vs e3nn.

    python3 benches/bench_foundation.py [--points 1000000] [--repeats 7]

One line per configuration: time, rate, and for the spherical harmonics the ratio against e3nn
measured in the same process (interleaved runs, best of ``--repeats``; the median is printed too
because shared machines are noisy). e3nn computes real harmonics (N, 16) float32; so3net returns
complex ones, one (N, 2l+1) complex64 tensor per l, i.e. twice the output bytes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
LMAX_CG = 10

_CG_SCRIPT = """
import time
from so3net import cg
start = time.perf_counter()
for l1 in range({lmax} + 1):
    for l2 in range({lmax} + 1):
        for l in range(abs(l1 - l2), l1 + l2 + 1):
            cg.{what}(l1, l2, l)
print(time.perf_counter() - start)
"""


def _cg_in_fresh_process(cache: str, what: str) -> float:
    """Seconds to get every block (l1, l2, l), l1, l2 <= 10, by ``cg.<what>`` in a new interpreter
    (the import is not counted)."""
    env = dict(os.environ, SO3NET_CACHE_DIR=cache, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _CG_SCRIPT.format(lmax=LMAX_CG, what=what)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the CG timing process failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def bench_cg(repeats: int) -> None:
    """Cold: exact computation and the disk cache written. Warm: every coefficient of every block
    as sparse (m1, m2, m, value) tables (what the product plans consume), and separately every
    block materialised densely (25 MB of mostly zeros, dominated by page faults)."""
    blocks = sum(2 * min(a, b) + 1 for a in range(LMAX_CG + 1) for b in range(LMAX_CG + 1))
    head = f"cg tables l1,l2<={LMAX_CG} ({blocks} blocks)"
    with tempfile.TemporaryDirectory(prefix="so3net-bench-cg-") as cache:
        cold = _cg_in_fresh_process(cache, "cg_block")
        print(f"{head}  cold cache, exact, new process:        {cold:8.3f} s    target <= 10 s")
        for what, label in (("cg_sparse", "sparse"), ("cg_block", "dense ")):
            warm = [_cg_in_fresh_process(cache, what) for _ in range(repeats)]
            print(f"{head}  warm disk cache, {label}, new process: {1e3 * min(warm):8.1f} ms"
                  f" (median {1e3 * statistics.median(warm):.1f} ms)   target <= 50 ms")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_sph(points: int, repeats: int) -> None:
    from e3nn import o3

    from so3net.sph import spherical_harmonics_all

    xyz = torch.randn(points, 3, generator=torch.Generator().manual_seed(0))
    e3nn_sh = o3.SphericalHarmonics([0, 1, 2, 3], normalize=True, normalization="integral")
    grads = {"so3net": [torch.ones(points, 2 * l + 1, dtype=torch.complex64) for l in range(4)],
             "e3nn": [torch.ones(points, 16)]}
    calls = {"so3net": lambda x: list(spherical_harmonics_all(3, x).values()), "e3nn": lambda x: [e3nn_sh(x)]}

    def run(name, backward):
        x = xyz.clone().requires_grad_(backward)
        if backward:
            return _timed(lambda: torch.autograd.backward(calls[name](x), grads[name]))
        with torch.no_grad():
            return _timed(lambda: calls[name](x))

    for backward in (False, True):
        times = {"so3net": [], "e3nn": []}
        for name in times:
            run(name, backward)  # warm-up (e3nn's TorchScript compiles here)
        for _ in range(repeats):
            for name in times:
                times[name].append(run(name, backward))
        best = {name: min(t) for name, t in times.items()}
        label = "fwd+bwd" if backward else "fwd    "
        for name in ("so3net", "e3nn"):
            print(f"sph l<=3 {points:.0e} pts float32 {label} {name:7s}: {1e3 * best[name]:8.1f} ms"
                  f" (median {1e3 * statistics.median(times[name]):6.1f} ms)  {points / best[name] / 1e6:6.1f} Mpts/s")
        print(f"sph l<=3 {label} so3net speed-up over e3nn: {best['e3nn'] / best['so3net']:.2f}x (best), "
              f"{statistics.median(times['e3nn']) / statistics.median(times['so3net']):.2f}x (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10**6)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    bench_cg(args.repeats)
    bench_sph(args.points, args.repeats)


if __name__ == "__main__":
    main()
