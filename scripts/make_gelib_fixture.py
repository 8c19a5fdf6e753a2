"""Record GElib's own CG products, for tests/test_gelib_parity.py (run where GElib is installed).

    pip install --no-build-isolation gelib==0.2.7     # builds GElib's C++ extension against the local torch
    python3 scripts/make_gelib_fixture.py             # writes tests/data/gelib_products.npz

Records, for random inputs made by GElib: ``CGproduct(x, y, 3)`` of types (2,3,2) x (1,2,3),
``DiagCGproduct(u, v, 2)`` of (2,2,2) x (2,2,2), and the gradients of
``Re sum_l <w_l, CGproduct(x, y, 3)_l>`` for x and y computed by GElib's backward. Parts are stored
as ``{name}_l{l}`` arrays (b, 2l+1, n), complex64 (GElib's layout, which is so3net's).
"""
import sys
from pathlib import Path

import numpy as np
import torch

import gelib

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "gelib_products.npz"


def parts(prefix: str, vec) -> dict:
    return {f"{prefix}_l{l}": p.detach().numpy() for l, p in vec.parts.items()}


def main() -> None:
    torch.manual_seed(0)
    x, y = gelib.SO3vec.randn(3, {0: 2, 1: 3, 2: 2}), gelib.SO3vec.randn(3, {0: 1, 1: 2, 2: 3})
    u, v = gelib.SO3vec.randn(3, {0: 2, 1: 2, 2: 2}), gelib.SO3vec.randn(3, {0: 2, 1: 2, 2: 2})
    for p in list(x.parts.values()) + list(y.parts.values()):
        p.requires_grad_()
    z = gelib.CGproduct(x, y, 3)
    w = {l: torch.randn_like(p) for l, p in z.parts.items()}
    sum((w[l].conj() * p).real.sum() for l, p in z.parts.items()).backward()
    grads = {f"gx_l{l}": p.grad.numpy() for l, p in x.parts.items()}
    grads.update({f"gy_l{l}": p.grad.numpy() for l, p in y.parts.items()})
    arrays = {**parts("x", x), **parts("y", y), **parts("z", z), **parts("w", type(z)(*w.values())),
              **parts("u", u), **parts("v", v), **parts("d", gelib.DiagCGproduct(u, v, 2)), **grads}
    np.savez_compressed(OUT, gelib_version=np.array(getattr(gelib, "__version__", "0.2.7")), **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(arrays)} arrays)", file=sys.stderr)


if __name__ == "__main__":
    main()
