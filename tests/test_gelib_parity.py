"""so3net's products equal GElib's own outputs (recorded by scripts/make_gelib_fixture.py from
GElib 0.2.7): values, the fragment order of every output part, and the gradients."""
from pathlib import Path

import numpy as np
import pytest
import torch

from so3net.types import CGproduct, DiagCGproduct, SO3vec

DATA = np.load(Path(__file__).parent / "data" / "gelib_products.npz")


def vec(name: str, requires_grad: bool = False) -> SO3vec:
    keys = sorted((k for k in DATA.files if k.startswith(f"{name}_l")), key=lambda k: int(k.split("_l")[1]))
    v = SO3vec({int(k.split("_l")[1]): torch.tensor(DATA[k]) for k in keys})
    return v.requires_grad_() if requires_grad else v          # its parts become the leaves


def assert_parts_equal(got: SO3vec, want: SO3vec, tol: float) -> None:
    assert sorted(got.parts) == sorted(want.parts)
    for l in want.parts:
        assert got.parts[l].shape == want.parts[l].shape, f"part {l}"
        torch.testing.assert_close(got.parts[l], want.parts[l], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_cgproduct_equals_gelib(dtype):
    x, y = vec("x").to(dtype=dtype), vec("y").to(dtype=dtype)
    assert_parts_equal(CGproduct(x, y, 3), vec("z").to(dtype=dtype), 2e-6)


def test_diag_cgproduct_equals_gelib():
    assert_parts_equal(DiagCGproduct(vec("u"), vec("v"), 2), vec("d"), 2e-6)


def test_cgproduct_gradients_equal_gelib_backward():
    x, y, w = vec("x", True), vec("y", True), vec("w")
    z = CGproduct(x, y, 3)
    sum((w.parts[l].conj() * p).real.sum() for l, p in z.parts.items()).backward()
    for name, v in (("gx", x), ("gy", y)):
        for l, p in v.parts.items():
            torch.testing.assert_close(p.grad, torch.tensor(DATA[f"{name}_l{l}"]), rtol=5e-6, atol=5e-6)


def test_fixture_is_not_trivial():
    """The comparison above can fail: a swapped fragment order changes the product."""
    x, y = vec("x"), vec("y")
    swapped = CGproduct(y, x, 3)           # same types per part count, other order of fragments
    z = vec("z")
    assert any(swapped.parts[l].shape != z.parts[l].shape or not torch.allclose(swapped.parts[l], z.parts[l])
               for l in z.parts)
