"""Fourier transforms on S² and SO(3): so3net.fourier beside e3nn's ToS2Grid / FromS2Grid.

S²: the equiangular (Driscoll–Healy / Kostelec–Rockmore) grid with ``res = (2B, 2B)`` is the same
grid for both libraries (e3nn's ``s2_grid``); ``lmax = B - 1``; float32; a batch of functions.
so3net's forward takes real values like e3nn's FromS2Grid; its inverse with ``real=True`` (column
"inv") is compared with e3nn's real-to-real ToS2Grid, the complex inverse is listed beside it.
e3nn's modules come from e3nn's own constructors, whose sympy Legendre derivations take minutes
at B = 32 and about 20 at B = 64; they are built once and cached on disk (``CACHE_DIR``), and each
run says whether they were built now or loaded, and how long the build took. Times are medians of
interleaved repeats with their ranges (the machine may be shared); "err" is each library's
float32 round trip coefficients -> grid -> coefficients; the fitted exponent p is from
``time ~ B^p``. SO(3): ``so3_forward``/``so3_inverse`` on the SOFT grid (2B)³.

    python benches/bench_fourier.py                       # bandwidths 8 16 32 64, batch 16, 1 thread
    python benches/bench_fourier.py --e3nn-build-max 64   # build e3nn's B = 64 modules if not cached
    python benches/bench_fourier.py --batch 1 --so3 8 16 32 64
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from so3net.fourier import _sphere_plan as plan  # its table caches are cleared to time the set-up
from so3net.fourier import so3_forward, so3_grid, so3_inverse, sphere_forward, sphere_grid, sphere_inverse
from so3net.kernels.native import cpu_summary

# ----------------------------------------------------------------------------- e3nn modules, cached on disk

CACHE_DIR = Path(os.environ.get("SO3NET_BENCH_CACHE", Path.home() / ".cache" / "so3net-bench"))


def e3nn_modules(L: int, res: tuple[int, int], build: bool = True):
    """e3nn's ``(ToS2Grid(L, res), FromS2Grid(res, L))`` and a line saying how they were obtained.

    e3nn's constructors derive every associated Legendre polynomial with sympy (``_poly_legendre``),
    a one-off cost that grows to tens of minutes at L = 63. The modules' buffers are therefore
    built once by e3nn's own constructors and cached in ``CACHE_DIR`` (keyed by e3nn version,
    L, res, dtype); later runs load them into the modules, whose ``forward`` is e3nn's unchanged.
    ``build=False`` returns ``(None, None, reason)`` instead of building a missing entry."""
    import e3nn
    path = CACHE_DIR / f"e3nn-{e3nn.__version__}-s2grid-lmax{L}-res{res[0]}x{res[1]}-{torch.get_default_dtype()}.pt"
    if path.exists():
        entry = torch.load(path, weights_only=True)
        cpu = f", {entry['cpu_seconds']:.0f} s CPU" if "cpu_seconds" in entry else ""
        how = (f"loaded from {path.name}, built by e3nn's constructors in {entry['seconds']:.0f} s wall{cpu} "
               f"({entry['profile']})")
        return _module("ToS2Grid", entry["to"]), _module("FromS2Grid", entry["from"]), how
    if not build:
        return None, None, f"not built (no cache entry {path}; --e3nn-build-max {L + 1} builds it)"
    to_grid, from_grid, seconds, cpu, profile = _build_e3nn(L, res)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    entry = {"seconds": seconds, "cpu_seconds": cpu, "profile": profile, "to": _state(to_grid),
             "from": _state(from_grid)}
    torch.save(entry, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    how = f"built now by e3nn's constructors in {seconds:.1f} s wall, {cpu:.1f} s CPU ({profile}); cached"
    return to_grid, from_grid, how


def _build_e3nn(L: int, res: tuple[int, int]):
    """Run e3nn's two constructors, timing the sympy derivations and the whole Legendre table
    (sympy, then an fx graph of the monomials, evaluated on the grid) inside them."""
    from e3nn import o3
    from e3nn.o3 import _angular_spherical_harmonics as ash
    from e3nn.o3 import _s2grid
    spent = {"poly": [0.0, 0], "table": [0.0, 0]}

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key][0] += time.perf_counter() - t
                spent[key][1] += 1
        return wrapper
    poly, table = ash._poly_legendre, _s2grid.spherical_harmonics_s2_grid
    ash._poly_legendre, _s2grid.spherical_harmonics_s2_grid = timed(poly, "poly"), timed(table, "table")
    try:
        t, cpu = time.perf_counter(), time.process_time()
        modules = o3.ToS2Grid(L, res), o3.FromS2Grid(res, L)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    finally:
        ash._poly_legendre, _s2grid.spherical_harmonics_s2_grid = poly, table
    (p, n), (tab, _) = spent["poly"], spent["table"]
    profile = (f"{p:.0f} s in {n} sympy Legendre derivations, {tab - p:.0f} s building and evaluating "
               f"the fx graph of their monomials, {seconds - tab:.0f} s in the rest")
    return (*modules, seconds, cpu, profile)


def _state(module) -> dict:
    return {"lmax": module.lmax, "res_beta": module.res_beta, "res_alpha": module.res_alpha,
            "buffers": {k: v.clone() for k, v in module.named_buffers()}}


def _module(name: str, state: dict):
    """An e3nn ``ToS2Grid``/``FromS2Grid`` holding cached buffers; its ``__init__`` (which would
    rebuild them) is skipped, everything else is e3nn's class."""
    from e3nn import o3
    module = getattr(o3, name).__new__(getattr(o3, name))
    torch.nn.Module.__init__(module)
    module.lmax, module.res_beta, module.res_alpha = state["lmax"], state["res_beta"], state["res_alpha"]
    for key, value in state["buffers"].items():
        module.register_buffer(key, value)
    return module


def timeit(fns: dict, repeats: int, min_time: float = 0.05) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per repeat; calls interleaved so that load
    from other processes hits all alike."""
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
    return samples


def exponent(bandwidths, times) -> float:
    return float(np.polyfit(np.log(bandwidths), np.log(times), 1)[0])


def setup_time(B: int) -> float:
    """Seconds to build so3net's S² tables for bandwidth B, caches cleared."""
    plan._tables64.cache_clear()
    plan._plan.cache_clear()
    grid = sphere_grid(B, "equiangular")
    t = time.perf_counter()
    sphere_inverse(sphere_forward(torch.zeros(1, grid.size), grid, B - 1), grid, real=True)
    return time.perf_counter() - t


def round_trip_errors(B: int, to_grid, from_grid) -> tuple[float, float | None]:
    """Relative error of coefficients -> grid -> coefficients in float32, lmax = B - 1, each
    library in its own convention (so3net: coefficients of a random real function)."""
    grid, L = sphere_grid(B, "equiangular"), B - 1
    gen = torch.Generator().manual_seed(0)
    c = sphere_forward(torch.randn(4, grid.size, generator=gen), grid, L).packed()
    back = sphere_forward(sphere_inverse(c_vec(c, L), grid, real=True), grid, L).packed()
    ours = float((back - c).norm() / c.norm())
    if to_grid is None:
        return ours, None
    c = torch.randn(4, (L + 1) ** 2, generator=gen)
    return ours, float((from_grid(to_grid(c)) - c).norm() / c.norm())


def c_vec(packed: torch.Tensor, L: int) -> dict[int, torch.Tensor]:
    return {l: packed[:, l * l:(l + 1) ** 2, None] for l in range(L + 1)}


def bench_sphere(bandwidths, batch: int, repeats: int, build_max: int) -> None:
    print(f"S² transforms, equiangular grid (2B x 2B) shared by both libraries, lmax = B-1, float32, batch {batch}")
    stats, order = {}, ("fwd", "fwd_e3nn", "inv_real", "inv_e3nn", "inv", "fwd_gl", "inv_gl")
    for B in bandwidths:
        L, grid, gl = B - 1, sphere_grid(B, "equiangular"), sphere_grid(B, "gauss-legendre")
        to_grid, from_grid, how = e3nn_modules(L, (2 * B, 2 * B), build=B <= build_max)
        print(f"  B={B}: e3nn ToS2Grid/FromS2Grid {how}")
        gen = torch.Generator().manual_seed(B)
        values = torch.randn(batch, grid.size, generator=gen)
        values_gl = torch.randn(batch, gl.size, generator=gen)
        coeffs = sphere_forward(values, grid, L)
        fns = {"fwd": lambda: sphere_forward(values, grid, L),
               "inv_real": lambda: sphere_inverse(coeffs, grid, real=True), "inv": lambda: sphere_inverse(coeffs, grid),
               "fwd_gl": lambda: sphere_forward(values_gl, gl, L), "inv_gl": lambda: sphere_inverse(coeffs, gl)}
        if to_grid is not None:
            e3_coeffs = torch.randn(batch, (L + 1) ** 2, generator=gen)
            e3_values = values.reshape(batch, 2 * B, 2 * B)
            fns.update(fwd_e3nn=lambda: from_grid(e3_values), inv_e3nn=lambda: to_grid(e3_coeffs))
        with torch.no_grad():
            samples = timeit(fns, repeats)
            errors = round_trip_errors(B, to_grid, from_grid)
        stats[B] = ({k: samples[k] for k in order if k in samples}, errors, setup_time(B))
    print_sphere_table(stats, batch)


def print_sphere_table(stats: dict, batch: int) -> None:
    ms = lambda s: f"{statistics.median(s) * 1e3:>8.3f}" if s else f"{'-':>8}"
    ratio = lambda a, e: f"{statistics.median(e) / statistics.median(a):>6.2f}x" if e else f"{'-':>7}"
    sci = lambda x: f"{x:>8.1e}" if x is not None else f"{'-':>8}"
    print(f"\nmedian ms per call (batch {batch}); ratio = e3nn / so3net (> 1: so3net faster); "
          "inv = so3net's real-output inverse, beside e3nn's real ToS2Grid")
    print(f"{'B':>3} {'N':>6} | {'fwd':>8} {'e3nn':>8} {'ratio':>7} | {'inv':>8} {'e3nn':>8} {'ratio':>7} | "
          f"{'inv cplx':>8} {'fwd GL':>8} {'inv GL':>8} | {'err ours':>8} {'e3nn':>8} | {'setup':>6}")
    for B, (t, (err, err_e3), setup) in stats.items():
        f, fe, i, ie = (t.get(k) for k in ("fwd", "fwd_e3nn", "inv_real", "inv_e3nn"))
        print(f"{B:>3} {4 * B * B:>6} | {ms(f)} {ms(fe)} {ratio(f, fe)} | {ms(i)} {ms(ie)} {ratio(i, ie)} | "
              f"{ms(t['inv'])} {ms(t['fwd_gl'])} {ms(t['inv_gl'])} | {sci(err)} {sci(err_e3)} | {setup * 1e3:>4.0f}ms")
    print("ranges over the interleaved repeats, ms (min-max):")
    for B, (t, _, _) in stats.items():
        print(f"  B={B}: " + ", ".join(f"{k} {min(s) * 1e3:.3f}-{max(s) * 1e3:.3f}" for k, s in t.items()))
    print("err: relative error of coefficients -> grid -> coefficients in float32, each library its own round "
          "trip; setup: so3net's tables, caches cleared")
    fits = []
    for k in next(iter(stats.values()))[0]:
        Bs = [B for B, (t, _, _) in stats.items() if k in t]
        p = lambda Bs: exponent(Bs, [statistics.median(stats[B][0][k]) for B in Bs])
        if len(Bs) > 1:
            fits.append(f"{k} {p(Bs):.2f} (B={Bs[0]}..{Bs[-1]}" + (f"; {p(Bs[-2:]):.2f} over B={Bs[-2]}..{Bs[-1]})"
                                                                  if len(Bs) > 2 else ")"))
    print("fitted scaling exponent p (median time ~ B^p):\n  " + "\n  ".join(fits))


def e3nn_so3grid(L: int, B: int):
    """e3nn's ``SO3Grid(L, resolution=B, aspect_ratio=1)``: (2B)^3 points, the SOFT grid's count (its
    Wigner matrices are dense ``(2B)^3 x sum (2l+1)^2`` buffers, 0.7 GB at B = 16)."""
    from e3nn import o3
    return o3.SO3Grid(L, B, aspect_ratio=1)


def bench_so3(bandwidths, batch: int, repeats: int, e3nn_max: int) -> None:
    rows = []
    print(f"\nSO(3) transforms, SOFT grid (2B)^3, lmax = B-1, float32, batch {batch}; median ms (min-max); "
          f"e3nn: SO3Grid(lmax, B, aspect_ratio=1) from_grid / to_grid, (2B)^3 points, same run (B <= {e3nn_max})")
    print(f"{'B':>4} {'N':>9} | {'forward':>22} {'e3nn':>8} {'ratio':>6} | {'inverse':>22} {'e3nn':>8} {'ratio':>6} | "
          f"{'ns/point fwd':>12}")
    for B in bandwidths:
        grid, L = so3_grid(B), B - 1
        values = torch.randn(batch, grid.size, generator=torch.Generator().manual_seed(B))
        fns = {}
        with torch.no_grad():
            coeffs = so3_forward(values, grid, L)
            fns = {"fwd": lambda: so3_forward(values, grid, L), "inv": lambda: so3_inverse(coeffs, grid)}
            if B <= e3nn_max:
                peer = e3nn_so3grid(L, B)
                e_values = torch.randn(batch, peer.res_alpha, peer.res_beta, peer.res_gamma)
                e_coeffs = peer.from_grid(e_values)
                fns.update(fwd_e3nn=lambda: peer.from_grid(e_values), inv_e3nn=lambda: peer.to_grid(e_coeffs))
            t = timeit(fns, max(3, repeats // 2), min_time=0.0)
        t = {k: (statistics.median(s), min(s), max(s)) for k, s in t.items()}
        rows.append(t)
        cell = lambda k: f"{t[k][0] * 1e3:>8.2f} ({t[k][1] * 1e3:.2f}-{t[k][2] * 1e3:.2f})"
        peer_cell = lambda k: (f"{t[k + '_e3nn'][0] * 1e3:>8.2f} {t[k + '_e3nn'][0] / t[k][0]:>5.2f}x"
                               if k + "_e3nn" in t else f"{'-':>8} {'-':>6}")
        print(f"{B:>4} {grid.size:>9} | {cell('fwd'):>22} {peer_cell('fwd')} | {cell('inv'):>22} {peer_cell('inv')} | "
              f"{t['fwd'][0] / (batch * grid.size) * 1e9:>12.1f}")
    print("ratio = e3nn / so3net (> 1: so3net faster)")
    if len(bandwidths) > 1:
        fit = {k: exponent(bandwidths, [r[k][0] for r in rows]) for k in ("fwd", "inv")}
        print("fitted exponent p (time ~ B^p): " + ", ".join(f"{k} {v:.2f}" for k, v in fit.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bandwidths", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--so3", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--so3-batch", type=int, default=1)
    parser.add_argument("--so3-e3nn-max", type=int, default=16,
                        help="time e3nn's SO3Grid up to this bandwidth (its dense matrices grow as B^5)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--e3nn-build-max", type=int, default=32,
                        help="build e3nn's modules now when not cached up to this bandwidth (B = 64: tens of minutes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both libraries (1: stable timings on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_summary()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    bench_sphere(args.bandwidths, args.batch, args.repeats, args.e3nn_build_max)
    bench_so3(args.so3, args.so3_batch, args.repeats, args.so3_e3nn_max)


if __name__ == "__main__":
    main()
