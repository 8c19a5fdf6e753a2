"""Fourier transforms on S² and SO(3): so3net.fourier beside e3nn's ToS2Grid / FromS2Grid.

S²: the equiangular (Driscoll–Healy / Kostelec–Rockmore) grid with ``res = (2B, 2B)`` is the same
grid for both libraries (e3nn's ``s2_grid``); ``lmax = B - 1``; float32; a batch of functions.
so3net's forward takes real values like e3nn's; its inverse returns complex values, or with
``real=True`` the real part (the column "inv(real)", compared with e3nn's real-to-real ToS2Grid).
Set-up: so3net's tables (Wigner-d recurrence) against the construction of e3nn's two modules. Times are the
median of interleaved repeats (the machine may be shared); the fitted exponent p is from
``time ~ B^p`` over the bandwidths. SO(3): ``so3_forward``/``so3_inverse`` on the SOFT grid (2B)³.

    python benches/bench_fourier.py                 # bandwidths 8 16 32 64, batch 16, 1 thread
    python benches/bench_fourier.py --batch 1 --so3 8 16 32 64
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from so3net.fourier import so3_forward, so3_grid, so3_inverse, sphere_forward, sphere_grid, sphere_inverse
from so3net.fourier import transforms  # its table caches are cleared to time the set-up


def timeit(fns: dict, repeats: int, min_time: float = 0.05) -> dict:
    """Median seconds per call of each function, calls interleaved so load hits all alike."""
    loops = {}
    for name, fn in fns.items():
        fn()  # warm-up: tables, caches
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < min_time:
            fn()
            n += 1
        loops[name] = max(1, n)
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            samples[name].append((time.perf_counter() - t) / loops[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def exponent(bandwidths, times) -> float:
    return float(np.polyfit(np.log(bandwidths), np.log(times), 1)[0])


def setup_times(B: int, with_e3nn: bool) -> tuple[float, float | None]:
    """Seconds to build so3net's tables (caches cleared) and e3nn's two modules for bandwidth B."""
    transforms._sphere_stage64.cache_clear()
    transforms._sphere_stage.cache_clear()
    grid = sphere_grid(B, "equiangular")
    t = time.perf_counter()
    sphere_forward(torch.zeros(1, grid.size), grid, B - 1)
    sphere_inverse(sphere_forward(torch.zeros(1, grid.size, dtype=torch.complex64), grid, B - 1), grid)
    ours = time.perf_counter() - t
    if not with_e3nn:
        return ours, None
    from e3nn import o3
    t = time.perf_counter()
    o3.ToS2Grid(B - 1, (2 * B, 2 * B)), o3.FromS2Grid((2 * B, 2 * B), B - 1)
    return ours, time.perf_counter() - t


def bench_sphere(bandwidths, batch: int, repeats: int, e3nn_max: int) -> None:
    from e3nn import o3
    rows = []
    print(f"S² transforms, equiangular grid (2B x 2B), lmax = B-1, float32, batch {batch}; "
          "ratio = e3nn time / so3net time (> 1: so3net faster)")
    print(f"{'B':>3} {'N':>6} | {'fwd so3net':>10} {'fwd e3nn':>10} {'ratio':>6} | {'inv so3net':>10} "
          f"{'inv(real)':>10} {'inv e3nn':>10} {'ratio':>6} | {'fwd GL':>9} {'inv GL':>9} | {'setup so3net':>12} {'e3nn':>8}")
    for B in bandwidths:
        L, grid, gl = B - 1, sphere_grid(B, "equiangular"), sphere_grid(B, "gauss-legendre")
        setup, setup_e3nn = setup_times(B, B <= e3nn_max)
        gen = torch.Generator().manual_seed(B)
        values = torch.randn(batch, grid.size, generator=gen)
        values_gl = torch.randn(batch, gl.size, generator=gen)
        coeffs = sphere_forward(values, grid, L)
        fns = {"fwd": lambda: sphere_forward(values, grid, L), "inv": lambda: sphere_inverse(coeffs, grid),
               "inv_real": lambda: sphere_inverse(coeffs, grid, real=True),
               "fwd_gl": lambda: sphere_forward(values_gl, gl, L), "inv_gl": lambda: sphere_inverse(coeffs, gl)}
        if setup_e3nn is not None:
            to_grid, from_grid = o3.ToS2Grid(L, (2 * B, 2 * B)), o3.FromS2Grid((2 * B, 2 * B), L)
            e3_coeffs = torch.randn(batch, (L + 1) ** 2, generator=gen)
            e3_values = values.reshape(batch, 2 * B, 2 * B)
            fns.update(fwd_e3nn=lambda: from_grid(e3_values), inv_e3nn=lambda: to_grid(e3_coeffs))
        with torch.no_grad():
            t = timeit(fns, repeats)
        rows.append(t)
        e3 = lambda k: f"{t[k] * 1e3:>8.3f}ms" if k in t else f"{'-':>10}"
        ratio = lambda k, e: f"{t[e] / t[k]:>5.2f}x" if e in t else f"{'-':>6}"
        setup_e3 = f"{setup_e3nn:>7.1f}s" if setup_e3nn is not None else f"{'skipped':>8}"
        print(f"{B:>3} {grid.size:>6} | {t['fwd'] * 1e3:>8.3f}ms {e3('fwd_e3nn')} {ratio('fwd', 'fwd_e3nn')} | "
              f"{t['inv'] * 1e3:>8.3f}ms {t['inv_real'] * 1e3:>8.3f}ms {e3('inv_e3nn')} {ratio('inv_real', 'inv_e3nn')} | "
              f"{t['fwd_gl'] * 1e3:>7.3f}ms {t['inv_gl'] * 1e3:>7.3f}ms | {setup:>11.2f}s {setup_e3}")
    if len(bandwidths) > 1:
        fit = {k: exponent([B for B, r in zip(bandwidths, rows) if k in r], [r[k] for r in rows if k in r])
               for k in rows[0] if sum(k in r for r in rows) > 1}
        print("fitted exponent p (time ~ B^p): " + ", ".join(f"{k} {v:.2f}" for k, v in fit.items()))
    if max(bandwidths) > e3nn_max:
        print(f"e3nn skipped above B = {e3nn_max}: building ToS2Grid/FromS2Grid derives sympy Legendre "
              "polynomials (minutes at B = 32, far longer at 64); --e3nn-max-bandwidth 64 includes it")


def bench_so3(bandwidths, batch: int, repeats: int) -> None:
    rows = []
    print(f"\nSO(3) transforms, SOFT grid (2B)^3, lmax = B-1, float32, batch {batch}")
    print(f"{'B':>4} {'N':>9} | {'forward':>10} {'inverse':>10} | {'ns/point fwd':>12}")
    for B in bandwidths:
        grid, L = so3_grid(B), B - 1
        values = torch.randn(batch, grid.size, generator=torch.Generator().manual_seed(B))
        with torch.no_grad():
            coeffs = so3_forward(values, grid, L)
            t = timeit({"fwd": lambda: so3_forward(values, grid, L), "inv": lambda: so3_inverse(coeffs, grid)},
                       max(3, repeats // 2), min_time=0.0)
        rows.append(t)
        print(f"{B:>4} {grid.size:>9} | {t['fwd'] * 1e3:>8.2f}ms {t['inv'] * 1e3:>8.2f}ms | "
              f"{t['fwd'] / (batch * grid.size) * 1e9:>12.1f}")
    if len(bandwidths) > 1:
        fit = {k: exponent(bandwidths, [r[k] for r in rows]) for k in rows[0]}
        print("fitted exponent p (time ~ B^p): " + ", ".join(f"{k} {v:.2f}" for k, v in fit.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bandwidths", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--so3", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--so3-batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--e3nn-max-bandwidth", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both libraries (1: stable timings on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    bench_sphere(args.bandwidths, args.batch, args.repeats, args.e3nn_max_bandwidth)
    bench_so3(args.so3, args.so3_batch, args.repeats)


if __name__ == "__main__":
    main()
