"""A short tour of so3net, checked as it runs: ``python -m so3net.demo``.

Every number printed is computed here; every claim is asserted.
"""
from __future__ import annotations

import time

import torch

import so3net as s


def main() -> None:
    torch.manual_seed(0)
    print("so3net", s.__version__, "| torch", torch.__version__)

    c = s.clebsch_gordan(1, 0, 1, 0, 0, 0)
    print(f"\n<1 0; 1 0 | 0 0> = {c!r}  (exact: -1/sqrt(3))")
    assert abs(c + 3 ** -0.5) < 1e-16

    x = s.SO3vec.randn(1, (1, 1), dtype=torch.complex128)
    y = s.SO3vec.randn(1, (1, 1), dtype=torch.complex128)
    z = s.CGproduct(x, y)
    print(f"\nCGproduct of two vectors of type {x.tau}: type {z.tau}")
    assert tuple(z.tau) == (2, 3, 1)
    print(s.cg_plan(tuple(x.tau), tuple(y.tau)).listing())

    R = s.random_rotation(dtype=torch.float64)
    rotated = s.CGproduct(x.rotate(R), y.rotate(R))
    err = max((rotated.parts[l] - z.rotate(R).parts[l]).abs().max().item() for l in z.parts)
    print(f"\nequivariance: |CG(Rx, Ry) - R CG(x, y)| = {err:.1e}")
    assert err < 1e-12

    class MyNet(s.NeuralNet):  # the talk's example network
        def __init__(self):
            super().__init__()
            v1, v2 = s.Input(), s.Input()
            w = v1 + v2
            self.output = s.CGproduct(w, v1 + w)

    net = MyNet()
    out = net(x, y)
    grads = net.backward(out)  # gradient of |out|^2 / 2 with respect to both inputs
    print(f"\nMyNet: inputs {x.tau}, {y.tau} -> output {out.tau}; backward gives gradients of types "
          f"{grads[0].tau}, {grads[1].tau}")

    big = s.SO3vec.randn(1000, (16, 16, 16))
    t = time.perf_counter()
    prod = s.CGproduct(big, big, maxl=2)
    first = time.perf_counter() - t
    times = []
    for _ in range(5):
        t = time.perf_counter()
        s.CGproduct(big, big, maxl=2)
        times.append(time.perf_counter() - t)
    print(f"\nCGproduct (16,16,16) x (16,16,16), maxl 2, batch 1000, complex64 on the CPU, backend "
          f"{s.backend()!r} (so3net.backend(); 'native': compiled C kernels): type {prod.tau}, "
          f"first call {first:.3f} s (builds the plan and the kernel tables), then "
          f"{sorted(times)[2] * 1e3:.1f} ms (median of 5)")
    print("\nTrain Cormorant on the shipped GFN2-xTB ethanol data: `so3net train` (see README.md).")


if __name__ == "__main__":
    main()
