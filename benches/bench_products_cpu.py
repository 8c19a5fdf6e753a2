"""CPU benchmark: CGproduct forward + backward (torch autograd) beside e3nn's FullTensorProduct.

Configuration (issues 3 and 14): tau = (16,16,16) x (16,16,16), maxl 2, batch 1000, through the
user API (``CGproduct`` of two ``SO3vec``s, gradients with respect to their parts), in the real
basis (float32: the same products of the same irreps as e3nn) and the default complex basis
(complex64), beside e3nn ``FullTensorProduct("16x0e+16x1o+16x2e", same, filter_ir_out=l <= 2)``
float32, all in one process with their repeats interleaved (so load from other processes hits all
alike). The loss is read the way users write it:

- ``packed sum`` / ``packed sqnorm``: ``z.packed().sum()`` / ``z.packed().pow(2).sum()``;
- ``per-part sum`` / ``per-part sqnorm``: ``sum(p.sum() for p in z.parts.values())`` /
  ``sum(p.pow(2).sum() ...)`` (complex: ``p.real.sum() + p.imag.sum()`` / ``p.abs().pow(2).sum()``);
- complex rows marked ``[view_as_real]``: the same two losses read through the real view of each
  complex tensor, ``torch.view_as_real(p).sum()`` / ``torch.view_as_real(p).pow(2).sum()`` (the
  same numbers: |z|² = re² + im²). torch's backward of ``p.real`` / ``p.imag`` builds a zero tensor
  of the part's full size, copies the gradient into half of it and adds the two; the backward of
  ``view_as_real`` is a view. Both are what users write; the table shows what each costs.
- e3nn gets the same loss of its output tensor (``out.sum()`` / ``out.pow(2).sum()``).

Each so3net row runs the backend in force (``so3net.kernels.backend()``: ``native``, the compiled
CPU kernels, when a C compiler is there); the ``torch`` rows run ``with backend("torch")`` (torch
ops only). Per implementation: median wall time and median process CPU time (which a shared
machine inflates less), the speed-up over e3nn with the same loss (targets: >= 10x real, >= 5x
complex64, per part) and per-part / packed (target <= 1.3).

Then ``DiagCGproduct`` and ``CGsquare`` of the same types (native against torch; e3nn has no
counterpart of either).

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

from so3net.kernels import backend  # noqa: E402
from so3net.kernels.native import cpu_summary  # noqa: E402
from so3net.types import CGproduct, CGsquare, DiagCGproduct, SO3vec, product_plan  # noqa: E402


def _total(t: torch.Tensor) -> torch.Tensor:
    return t.real.sum() + t.imag.sum() if t.is_complex() else t.sum()


def _sqnorm(t: torch.Tensor) -> torch.Tensor:
    return t.abs().pow(2).sum() if t.is_complex() else t.pow(2).sum()


LOSSES = {  # how a user's loss reads the output SO3vec z
    "packed sum": lambda z: _total(z.packed()),
    "per-part sum": lambda z: sum(_total(p) for p in z.parts.values()),
    "packed sqnorm": lambda z: _sqnorm(z.packed()),
    "per-part sqnorm": lambda z: sum(_sqnorm(p) for p in z.parts.values()),
}
PLANE_LOSSES = {  # the same losses of complex outputs, read through torch.view_as_real
    "packed sum": lambda z: torch.view_as_real(z.packed()).sum(),
    "per-part sum": lambda z: sum(torch.view_as_real(p).sum() for p in z.parts.values()),
    "packed sqnorm": lambda z: torch.view_as_real(z.packed()).pow(2).sum(),
    "per-part sqnorm": lambda z: sum(torch.view_as_real(p).pow(2).sum() for p in z.parts.values()),
}
E3NN_LOSSES = {"sum": lambda out: out.sum(), "sqnorm": lambda out: out.pow(2).sum()}


def so3net_step(batch: int, tau, maxl: int, basis: str, loss, backend_name: str | None = None):
    """One forward + backward through the API: ``loss(CGproduct(x, y))``, gradients of the parts."""
    x = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    y = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    inputs = list(x.parts.values()) + list(y.parts.values())

    def step():
        with backend(backend_name):
            torch.autograd.grad(loss(CGproduct(x, y, maxl)), inputs)
    return step, product_plan(x, y, "full", maxl)


def family_step(batch: int, tau, maxl: int, basis: str, backend_name: str, name: str):
    """``DiagCGproduct(x, y)`` or ``CGsquare(x)``, forward + backward of a per-part sum."""
    x = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    y = SO3vec.randn(batch, tau, basis=basis).requires_grad_()
    product = (lambda: DiagCGproduct(x, y, maxl)) if name == "DiagCGproduct" else (lambda: CGsquare(x, maxl))
    inputs = list(x.parts.values()) + (list(y.parts.values()) if name == "DiagCGproduct" else [])

    def step():
        with backend(backend_name):
            torch.autograd.grad(LOSSES["per-part sum"](product()), inputs)
    return step


def e3nn_step(batch: int, mul: int, maxl: int, loss):
    from e3nn import o3
    irreps = o3.Irreps(f"{mul}x0e+{mul}x1o+{mul}x2e")
    keep = [f"{l}{p}" for l in range(maxl + 1) for p in "eo"]
    tp = o3.FullTensorProduct(irreps, irreps, filter_ir_out=keep)
    x = irreps.randn(batch, -1, requires_grad=True)
    y = irreps.randn(batch, -1, requires_grad=True)

    def step():
        torch.autograd.grad(loss(tp(x, y)), [x, y])
    return step, tp.irreps_out


def measure(steps: dict, repeats: int) -> dict:
    """Median (wall, CPU) seconds per implementation, repeats interleaved."""
    for step in steps.values():
        step()                    # warm-up: plans, CG tables, kernels, e3nn's code generation
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
    steps, plan = {}, None
    for basis in ("real", "complex"):
        for loss_name, loss in LOSSES.items():
            steps[(basis, loss_name, None)], plan = so3net_step(args.batch, tau, args.maxl, basis, loss)
        if basis == "complex":
            for loss_name, loss in PLANE_LOSSES.items():
                steps[(basis, loss_name, "view_as_real")] = so3net_step(args.batch, tau, args.maxl, basis, loss)[0]
        steps[(basis, "packed sum", "torch")] = so3net_step(args.batch, tau, args.maxl, basis,
                                                            LOSSES["packed sum"], "torch")[0]
    for loss_name, loss in E3NN_LOSSES.items():
        steps[("e3nn", loss_name, None)], irreps_out = e3nn_step(args.batch, args.mul, args.maxl, loss)
    times = measure(steps, args.repeats)
    print(f"# {torch.get_num_threads()} torch threads, torch {torch.__version__}, batch {args.batch}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {args.repeats} interleaved repeats, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"# CPU: {cpu_summary()}")
    print(f"# so3net backend in force: {backend()}; e3nn 0.6 FullTensorProduct float32 ({irreps_out.dim} dims)")
    print(f"# CGproduct {tuple(plan.tau1)} x {tuple(plan.tau2)} maxl {args.maxl} -> {tuple(plan.tau_out)}, "
          f"forward + backward; vs e3nn = e3nn time / so3net time with the same loss (targets: real >= 10x, "
          f"complex64 >= 5x); per-part/packed: targets <= 1.3")
    for loss_name in E3NN_LOSSES:
        wall, cpu = times[("e3nn", loss_name, None)]
        print(f"{'e3nn float32':22s} {loss_name:16s} wall {wall * 1e3:8.1f} ms  cpu {cpu * 1e3:8.1f} ms")
    for (basis, loss_name, name), (wall, cpu) in times.items():
        if basis == "e3nn":
            continue
        e_wall, e_cpu = times[("e3nn", loss_name.split()[-1], None)]
        label = f"so3net {'real f32' if basis == 'real' else 'complex64'}" + (f" [{name}]" if name else "")
        line = (f"{label:22s} {loss_name:16s} wall {wall * 1e3:8.1f} ms  cpu {cpu * 1e3:8.1f} ms  "
                f"vs e3nn wall {e_wall / wall:5.2f}x cpu {e_cpu / cpu:5.2f}x")
        if loss_name.startswith("per-part"):
            p_wall, p_cpu = times[(basis, loss_name.replace("per-part", "packed"), name)]
            line += f"  per-part/packed wall {wall / p_wall:4.2f} cpu {cpu / p_cpu:4.2f}"
        print(line)
    family = {(name, basis, b): family_step(args.batch, tau, args.maxl, basis, b, name)
              for name in ("DiagCGproduct", "CGsquare") for basis in ("real", "complex")
              for b in ("native", "torch")}
    times = measure(family, args.repeats)
    print("# the rest of the family, same types, forward + backward of a per-part sum (no e3nn counterpart); "
          "speed-up = torch backend / native backend")
    for (name, basis, b), (wall, cpu) in times.items():
        if b == "torch":
            continue
        t_wall, t_cpu = times[(name, basis, "torch")]
        print(f"so3net {name} {basis:7s} native wall {wall * 1e3:7.1f} ms  torch {t_wall * 1e3:7.1f} ms  "
              f"speed-up wall {t_wall / wall:5.2f}x  cpu {t_cpu / cpu:5.2f}x")


if __name__ == "__main__":
    main()
