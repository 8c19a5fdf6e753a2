"""CPU benchmark: CGproduct forward + backward (torch autograd) beside e3nn's FullTensorProduct.

Configuration (issue 3): tau = (16,16,16) x (16,16,16), maxl 2, batch 1000, through the user API
(``CGproduct`` of two ``SO3vec``), in the real basis (float32: the same products of the same
irreps as e3nn) and the complex basis (complex64), each with the compiled CPU kernels
(``SO3NET_CPU_KERNELS=native``; the default ``auto`` takes them when a C compiler is there) and
with the torch GEMM path (``=torch``), beside e3nn
``FullTensorProduct("16x0e+16x1o+16x2e", same, filter_ir_out=l <= 2)`` float32, all in one
process with their repeats interleaved (so load from other processes hits all alike). Per
implementation: median wall time and median process CPU time (which a shared machine inflates
less) of forward + backward, GFLOP/s of the useful multiply-adds (``flops()`` of the forward plan
and its two backward plans) and the speed-up over e3nn (target: at least 10x).

Then ``DiagCGproduct`` and ``CGsquare`` of the same types (compiled kernels against the torch path;
e3nn has no counterpart of either).

Run: ``python3 benches/bench_products_cpu.py [--batch 1000] [--repeats 9] [--threads N] [--thp]``.
``--thp`` sets ``THP_MEM_ALLOC_ENABLE=1`` (torch allocates large tensors on huge pages: fresh
outputs of 50-100 MB otherwise cost tens of ms of page faults); OpenMP threads wait passively
(``OMP_WAIT_POLICY=PASSIVE``) unless the variable is set. Both are read when torch is imported
and apply to every implementation alike; the header prints them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--mul", type=int, default=16)
    ap.add_argument("--maxl", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--thp", action="store_true", help="THP_MEM_ALLOC_ENABLE=1 for torch's allocator")
    return ap.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.thp:
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from so3net.kernels import native  # noqa: E402
from so3net.types import CGproduct, CGsquare, DiagCGproduct, SO3vec, product_plan  # noqa: E402


def so3net_step(batch: int, tau, maxl: int, basis: str, kernels: str):
    """One forward + backward through the API with ``SO3NET_CPU_KERNELS=kernels`` in force."""
    x = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    y = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    inputs = list(x.parts.values()) + list(y.parts.values())
    g = torch.randn_like(CGproduct(x, y, maxl).packed())

    def step():
        os.environ["SO3NET_CPU_KERNELS"] = kernels
        torch.autograd.grad(CGproduct(x, y, maxl).packed(), inputs, g)
    return step, product_plan(x, y, "full", maxl)


def family_step(batch: int, tau, maxl: int, basis: str, kernels: str, name: str):
    """``DiagCGproduct(x, y)`` or ``CGsquare(x)``, forward + backward, with ``kernels`` in force."""
    x = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    y = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    product = (lambda: DiagCGproduct(x, y, maxl)) if name == "DiagCGproduct" else (lambda: CGsquare(x, maxl))
    inputs = list(x.parts.values()) + (list(y.parts.values()) if name == "DiagCGproduct" else [])
    g = torch.randn_like(product().packed())

    def step():
        os.environ["SO3NET_CPU_KERNELS"] = kernels
        torch.autograd.grad(product().packed(), inputs, g)
    return step


def e3nn_step(batch: int, mul: int, maxl: int):
    from e3nn import o3
    irreps = o3.Irreps(f"{mul}x0e+{mul}x1o+{mul}x2e")
    keep = [f"{l}{p}" for l in range(maxl + 1) for p in "eo"]
    tp = o3.FullTensorProduct(irreps, irreps, filter_ir_out=keep)
    x = irreps.randn(batch, -1, requires_grad=True)
    y = irreps.randn(batch, -1, requires_grad=True)
    g = torch.randn(batch, tp.irreps_out.dim)

    def step():
        torch.autograd.grad(tp(x, y), [x, y], g)
    return step, tp.irreps_out


def measure(steps: dict, repeats: int) -> dict:
    """Median (wall, CPU) seconds per implementation, repeats interleaved."""
    for step in steps.values():
        step()                    # warm-up: plans, CG tables, e3nn's code generation
    samples = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v))
            for name, v in samples.items()}


def main() -> None:
    args = ARGS
    torch.set_num_threads(args.threads)
    tau = (args.mul,) * 3
    steps, plans, names = {}, {}, {}
    for basis, dtype in (("real", "real basis float32"), ("complex", "complex64")):
        for kernels, how in (("native", "compiled"), ("torch", "torch GEMMs")):
            key = f"{basis}/{kernels}"
            steps[key], plans[key] = so3net_step(args.batch, tau, args.maxl, basis, kernels)
            names[key] = f"so3net {dtype}, {how}"
    steps["e3nn"], irreps_out = e3nn_step(args.batch, args.mul, args.maxl)
    names["e3nn"] = f"e3nn 0.6 FullTensorProduct float32 ({irreps_out.dim} dims)"
    times = measure(steps, args.repeats)
    os.environ["SO3NET_CPU_KERNELS"] = "native"
    plan = plans["real/native"]
    print(f"# {torch.get_num_threads()} torch threads, torch {torch.__version__}, batch {args.batch}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {args.repeats} interleaved repeats, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"# CPU kernels in force by default: {native.status()}")
    print(f"# CGproduct {tuple(plan.tau1)} x {tuple(plan.tau2)} maxl {args.maxl} -> {tuple(plan.tau_out)}, "
          f"forward + backward; speed-up = e3nn / so3net (target >= 10x)")
    e_wall, e_cpu = times["e3nn"]
    for key in steps:
        wall, cpu = times[key]
        if key == "e3nn":
            rate, ratio = " " * 14, ""
        else:
            flops = sum(p.flops(args.batch) for p in (plans[key],) + tuple(plans[key].backward_plans))
            rate = f"{flops / wall / 1e9:6.2f} GFLOP/s"
            ratio = f"speed-up wall {e_wall / wall:5.2f}x  cpu {e_cpu / cpu:5.2f}x"
        print(f"{names[key]:46s} wall {wall * 1e3:8.1f} ms  cpu {cpu * 1e3:8.1f} ms  {rate}  {ratio}")
    family = {f"{name}/{basis}/{kernels}": family_step(args.batch, tau, args.maxl, basis, kernels, name)
              for name in ("DiagCGproduct", "CGsquare") for basis in ("real", "complex")
              for kernels in ("native", "torch")}
    times = measure(family, args.repeats)
    os.environ["SO3NET_CPU_KERNELS"] = "native"
    print("# the rest of the family, same types, forward + backward (no e3nn counterpart); "
          "speed-up = torch path / compiled")
    for key in family:
        name, basis, kernels = key.split("/")
        if kernels == "torch":
            continue
        (wall, cpu), (t_wall, t_cpu) = times[key], times[f"{name}/{basis}/torch"]
        print(f"so3net {name} {basis:7s} compiled wall {wall * 1e3:7.1f} ms  torch path {t_wall * 1e3:7.1f} ms  "
              f"speed-up wall {t_wall / wall:5.2f}x  cpu {t_cpu / cpu:5.2f}x")

if __name__ == "__main__":
    main()
