"""so3net.fourier._sphere_plan: both α-stage variants (DFT matmul, FFT) of the S² transforms, the
unchecked SO3vec the forward returns, and float32 tables free of subnormal numbers."""
from __future__ import annotations

import pytest
import torch

from so3net.fourier import _sphere_plan, so3_grid, sphere_evaluate, sphere_forward, sphere_grid, sphere_inverse
from so3net.fourier._sphere_plan import TINY, sphere_plan
from so3net.fourier.transforms import _so3_stage
from so3net.types import SO3vec

C128 = torch.complex128
VARIANTS = {"dft": 10 ** 9, "fft": 0}  # DFT_MAX_NPHI forcing each variant


@pytest.fixture(params=sorted(VARIANTS))
def variant(request, monkeypatch):
    monkeypatch.setattr(_sphere_plan, "DFT_MAX_NPHI", VARIANTS[request.param])
    return request.param


def random_coeffs(lmax: int, *batch, seed: int = 0) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {l: torch.randn(*batch, 2 * l + 1, 1, generator=g, dtype=C128) for l in range(lmax + 1)}


def real_part_coeffs(F: dict) -> dict:
    """Coefficients of Re f: (F^l_m + (-1)^m conj(F^l_{-m})) / 2."""
    out = {}
    for l, p in F.items():
        sign = (-1.0) ** torch.arange(-l, l + 1, dtype=torch.float64)[:, None]
        out[l] = (p + sign * p.flip(-2).conj()) / 2
    return out


def err(a, b) -> float:
    a, b = getattr(a, "parts", a), getattr(b, "parts", b)
    assert sorted(a) == sorted(b)
    return max(float((a[l] - b[l]).abs().max()) for l in a)


@pytest.mark.parametrize("kind", ["gauss-legendre", "equiangular"])
@pytest.mark.parametrize("B", [1, 2, 5, 12])
def test_both_variants_match_direct_evaluation_and_invert_exactly(variant, kind, B):
    grid, L = sphere_grid(B, kind), B - 1
    assert sphere_plan(grid, L, torch.float64, "cpu").dft == (variant == "dft")
    F = random_coeffs(L, 2, 3, seed=B)
    f = sphere_evaluate(F, grid.xyz)                                   # (2, 3, N), the oracle
    assert (sphere_inverse(F, grid) - f).abs().max() < 1e-12
    assert (sphere_inverse(F, grid, real=True) - f.real).abs().max() < 1e-12
    assert err(sphere_forward(f, grid, L), F) < 1e-12
    assert err(sphere_forward(f.real, grid, L), real_part_coeffs(F)) < 1e-12
    low = max(L - 2, 0)  # lower lmax: the first degrees of the same coefficients
    assert err(sphere_forward(f, grid, low), {l: F[l] for l in range(low + 1)}) < 1e-12


@pytest.mark.parametrize("complex_values", [False, True])
def test_both_variants_are_differentiable_twice(variant, complex_values):
    grid = sphere_grid(2, "equiangular")
    g = torch.Generator().manual_seed(1)
    dtype = C128 if complex_values else torch.float64
    v = torch.randn(2, grid.size, generator=g, dtype=dtype, requires_grad=True)
    c = torch.randn(2, 4, generator=g, dtype=C128, requires_grad=True)
    fwd = lambda v: torch.view_as_real(sphere_forward(v, grid, 1).parts[1])
    inv = lambda p: sphere_inverse({0: p[:, :1, None], 1: p[:, 1:, None]}, grid, real=not complex_values)
    inv_r = lambda p: torch.view_as_real(inv(p)) if complex_values else inv(p)
    for fn, x in ((fwd, v), (inv_r, c)):
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_forward_returns_the_vector_the_checked_constructors_make():
    grid = sphere_grid(6, "equiangular")
    v = sphere_forward(torch.randn(2, 3, grid.size, dtype=torch.float64), grid, 5)
    packed = torch.cat([p.reshape(2, 3, -1) for p in v.parts.values()], -1)
    checked = SO3vec.from_packed(packed, (1,) * 6)
    assert SO3vec(v.parts).tau == checked.tau and v.batch == (2, 3) and v.dtype == C128
    for slot in SO3vec.__slots__:
        if slot == "__weakref__":
            continue
        a, b = getattr(v, slot), getattr(checked, slot)
        if slot == "_parts":                   # made on first use
            a, b = dict(v.parts), dict(checked.parts)
        same(a, b, slot)
    assert torch.equal(v.packed(), packed)


def same(a, b, what: str) -> None:
    """Equal values, recursively through dicts and tuples of tensors."""
    assert type(a) is type(b), f"slot {what}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and torch.equal(a, b), f"slot {what} differs"
    elif isinstance(a, (tuple, list, dict)):
        pairs = zip(a.values(), b.values()) if isinstance(a, dict) else zip(a, b)
        assert len(a) == len(b) and (not isinstance(a, dict) or list(a) == list(b)), f"slot {what}"
        for x, y in pairs:
            same(x, y, what)
    else:
        assert a == b, f"slot {what}: {a!r} vs {b!r}"


def test_inverse_sees_replaced_and_modified_parts_of_a_forward_output():
    grid = sphere_grid(4, "gauss-legendre")
    v = sphere_forward(torch.randn(3, grid.size, dtype=torch.float64), grid, 3)
    v.parts[2] = v.parts[2] * 2                # a new tensor: the packed buffer is stale now
    v.parts[1].mul_(-1)                        # in place: the packed buffer sees it
    assert (sphere_inverse(v, grid) - sphere_inverse(dict(v.parts), grid)).abs().max() < 1e-14
    assert (sphere_inverse(v, grid) - sphere_evaluate(dict(v.parts), grid.xyz)).abs().max() < 1e-12


@pytest.mark.parametrize("dft", [True, False])
def test_float32_tables_hold_no_subnormal_numbers(dft):
    """Subnormal table entries (d^l_{m0} near the poles at B >= 24) slow matmuls down severalfold."""
    tiny = torch.finfo(torch.float32).tiny
    plan = sphere_plan(sphere_grid(32, "equiangular"), 31, torch.float32, "cpu", dft)
    stage = _so3_stage(so3_grid(24), 23, torch.float32, torch.device("cpu"))
    tables = [plan.T, plan.S] + [t for g in stage.groups for t in (g.fwd, g.inv)]
    for t in tables:
        assert not ((t != 0) & (t.abs() < tiny)).any()
        assert t.abs().max() > 1e3 * TINY  # the tables are not all flushed away
