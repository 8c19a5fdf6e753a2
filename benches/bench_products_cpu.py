"""CPU benchmark: CGproduct forward + backward (torch autograd) beside e3nn's FullTensorProduct.

Configuration (issue 3): tau = (16,16,16) x (16,16,16), maxl 2, batch 1000, complex64, against
e3nn ``FullTensorProduct("16x0e+16x1o+16x2e", same, filter_ir_out=l <= 2)`` in float32 (the same
products of the same irreps, real basis) measured in the same process. One line per
configuration: median time of forward + backward, GFLOP/s and GB/s from ``flops()``/``bytes()`` of the forward
plan and its two backward plans, and the speed-up over e3nn.

Run: ``python benches/bench_products_cpu.py [--batch 1000] [--repeats 5] [--threads N]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from so3net.types import CGproduct, SO3type, SO3vec, product_plan


def timed(step, repeats: int) -> float:
    step()  # warm-up: plan compilation, CG tables, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def so3net_step(batch: int, tau, maxl: int):
    x = SO3vec.randn(batch, tau).requires_grad_()
    y = SO3vec.randn(batch, tau).requires_grad_()
    inputs = list(x.parts.values()) + list(y.parts.values())
    g = SO3vec.randn(batch, x.tau.CGproduct(tau, maxl)).packed()

    def step():
        z = CGproduct(x, y, maxl).packed()
        torch.autograd.grad(z, inputs, g)
    return step, product_plan(x, y, "full", maxl)


def e3nn_step(batch: int, mul: int, maxl: int):
    from e3nn import o3
    irreps = o3.Irreps(f"{mul}x0e+{mul}x1o+{mul}x2e")
    keep = [f"{l}{p}" for l in range(maxl + 1) for p in "eo"]
    tp = o3.FullTensorProduct(irreps, irreps, filter_ir_out=keep)
    x = irreps.randn(batch, -1, requires_grad=True)
    y = irreps.randn(batch, -1, requires_grad=True)
    g = torch.randn(batch, tp.irreps_out.dim)

    def step():
        z = tp(x, y)
        torch.autograd.grad(z, [x, y], g)
    return step, tp.irreps_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--mul", type=int, default=16)
    ap.add_argument("--maxl", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tau = (args.mul,) * 3
    ours, plan = so3net_step(args.batch, tau, args.maxl)
    theirs, irreps_out = e3nn_step(args.batch, args.mul, args.maxl)
    t_ours, t_e3nn = timed(ours, args.repeats), timed(theirs, args.repeats)
    plans = (plan,) + tuple(plan.backward_plans)  # forward, d/dx, d/dy
    flops = sum(p.flops(args.batch) for p in plans)
    nbytes = sum(p.bytes(args.batch, itemsize=8) for p in plans)
    print(f"# {torch.get_num_threads()} torch threads, torch {torch.__version__}, batch {args.batch}")
    print(f"so3net CGproduct {SO3type(plan.tau1)}x{SO3type(plan.tau2)} maxl {args.maxl} -> {SO3type(plan.tau_out)} "
          f"complex64 fwd+bwd: {t_ours * 1e3:8.1f} ms  ({flops / t_ours / 1e9:.2f} GFLOP/s, "
          f"{nbytes / t_ours / 1e9:.2f} GB/s compulsory traffic)")
    print(f"e3nn FullTensorProduct {args.mul}x(0e+1o+2e)^2 -> {irreps_out.dim} dims float32 fwd+bwd: "
          f"{t_e3nn * 1e3:8.1f} ms")
    print(f"speed-up over e3nn: {t_e3nn / t_ours:.2f}x (target >= 10x)")


if __name__ == "__main__":
    main()
