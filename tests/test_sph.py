"""Spherical harmonics: scipy agreement, orthonormality, solid harmonics, the origin and the poles,
gradients (finite differences, double backward), dtypes, shapes, errors."""
import math

import numpy as np
import pytest
import scipy.special
import torch

from so3net.sph import solid_harmonics, spherical_harmonics, spherical_harmonics_all

POLES = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -2.5], [1e-20, 0.0, 3.0]], dtype=torch.float64)
TINY = torch.tensor([[0.0, 0.0, 1e-30], [1e-150, -1e-150, 0.0]], dtype=torch.float64)


def points(n=400, seed=0, tiny=False):
    """Random points, the poles, the equator; with ``tiny``, points next to the origin (where the
    direction, hence Y^l for l > 0, is discontinuous: no finite differences there)."""
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    extra = [TINY] if tiny else []
    return torch.cat([x, POLES, torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [3.0, 4.0, 0]], dtype=torch.float64)] + extra)


def scipy_reference(l: int, xyz: torch.Tensor) -> np.ndarray:
    x, y, z = xyz.numpy().T
    theta = np.arctan2(np.hypot(x, y), z)  # accurate at the poles, unlike arccos(z / r)
    phi = np.arctan2(y, x)
    return np.stack([scipy.special.sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)], -1)


def test_equal_to_scipy_to_1e12():
    xyz = points(tiny=True)
    every = spherical_harmonics_all(12, xyz)
    assert sorted(every) == list(range(13))
    for l in range(13):
        ref = scipy_reference(l, xyz)
        assert np.abs(every[l].numpy() - ref).max() < 1e-12, l
        assert np.abs(spherical_harmonics(l, xyz).numpy() - ref).max() < 1e-12, l


def test_orthonormal_on_a_gauss_legendre_grid():
    """sum_grid w Y^l_m conj(Y^l'_m') = delta (exact quadrature for degree <= 2 * 6)."""
    lmax, n = 6, 8
    t, w = np.polynomial.legendre.leggauss(n)
    phi = 2 * np.pi * np.arange(2 * n) / (2 * n)
    st, ct = np.sqrt(1 - t**2)[:, None], t[:, None]
    xyz = torch.tensor(np.stack([st * np.cos(phi), st * np.sin(phi), ct * np.ones_like(phi)], -1).reshape(-1, 3))
    weights = torch.tensor(np.repeat(w, 2 * n) * (2 * np.pi / (2 * n)), dtype=torch.complex128)
    Y = torch.cat(list(spherical_harmonics_all(lmax, xyz).values()), -1)  # (N, (lmax+1)^2)
    gram = (Y.conj().T * weights) @ Y
    assert float((gram - torch.eye(gram.shape[0])).abs().max()) < 1e-13


def test_condon_shortley_phase_and_conjugation():
    xyz = points(50)
    Y1 = spherical_harmonics(1, xyz)
    unit = xyz / xyz.norm(dim=-1, keepdim=True)
    c = math.sqrt(3 / (8 * math.pi))
    assert float((Y1[:, 2] - (-c) * torch.complex(unit[:, 0], unit[:, 1])).abs().max()) < 1e-15
    for l in (2, 5):
        Y = spherical_harmonics(l, xyz)
        signs = torch.tensor([(-1.0) ** m for m in range(-l, l + 1)], dtype=torch.float64)
        assert float((Y.flip(-1).conj() * signs - Y).abs().max()) < 1e-15  # Y_{-m} = (-1)^m conj(Y_m)


def test_solid_harmonics_are_homogeneous():
    xyz = points(60)
    r = xyz.norm(dim=-1, keepdim=True)
    for l in range(7):
        S = solid_harmonics(l, xyz)
        assert float((S - r**l * spherical_harmonics(l, xyz)).abs().max()) < 1e-12 * max(1.0, float(r.max()) ** l)
        assert float((solid_harmonics(l, 2.5 * xyz) - 2.5**l * S).abs().max()) < 1e-11 * float(S.abs().max())
        assert torch.equal(spherical_harmonics(l, xyz, normalize=False), S)


def test_value_at_origin():
    """Defined value at r = 0. Points whose |r|^2 underflows to 0 (|r| < ~1e-154 in float64,
    ~1e-22 in float32) are the origin too."""
    zero = torch.tensor([[0.0, 0.0, 0.0], [-0.0, 0.0, -0.0], [1e-200, -1e-200, 0.0]], dtype=torch.float64)
    every = spherical_harmonics_all(4, zero)
    assert torch.allclose(every[0], torch.full((3, 1), 1 / math.sqrt(4 * math.pi), dtype=torch.complex128))
    for l in range(1, 5):
        assert torch.equal(every[l], torch.zeros(3, 2 * l + 1, dtype=torch.complex128))
        assert torch.equal(solid_harmonics(l, zero[:2]), torch.zeros(2, 2 * l + 1, dtype=torch.complex128))


def _real_view(fn):
    return lambda x: tuple(torch.view_as_real(y) for y in fn(x))


@pytest.mark.parametrize("l", [0, 1, 2, 3, pytest.param(6, marks=pytest.mark.slow)])
def test_gradients_match_finite_differences(l):
    xyz = points(2 if l < 6 else 0, seed=l).requires_grad_()  # random points, the poles and the equator
    assert torch.autograd.gradcheck(_real_view(lambda x: [spherical_harmonics(l, x)]), (xyz,))
    assert torch.autograd.gradgradcheck(_real_view(lambda x: [spherical_harmonics(l, x)]), (xyz,))


@pytest.mark.slow
def test_all_degrees_and_solid_gradients():
    xyz = points(1, seed=9).requires_grad_()
    fn = _real_view(lambda x: list(spherical_harmonics_all(3, x).values()))
    assert torch.autograd.gradcheck(fn, (xyz,))
    assert torch.autograd.gradgradcheck(fn, (xyz,))
    with_origin = torch.cat([xyz.detach()[:4], torch.zeros(1, 3, dtype=torch.float64)]).requires_grad_()
    solid = _real_view(lambda x: [solid_harmonics(3, x), solid_harmonics(1, x)])
    assert torch.autograd.gradcheck(solid, (with_origin,))
    assert torch.autograd.gradgradcheck(solid, (with_origin,))


def test_no_nan_at_poles_or_origin_incl_double_backward():
    xyz = torch.cat([POLES, TINY[:1], torch.zeros(2, 3, dtype=torch.float64)]).requires_grad_()
    every = spherical_harmonics_all(5, xyz)
    loss = sum((y.real ** 2 + 3 * y.imag).sum() for y in every.values())
    (g,) = torch.autograd.grad(loss, xyz, create_graph=True)
    (h,) = torch.autograd.grad(g.square().sum(), xyz)
    assert torch.isfinite(g).all() and torch.isfinite(h).all()
    assert torch.equal(g[-2:], torch.zeros(2, 3, dtype=torch.float64))  # the direction is undefined at r = 0


def test_gradient_is_tangent_to_the_sphere():
    xyz = points(30).requires_grad_()
    Y = spherical_harmonics(3, xyz)
    (g,) = torch.autograd.grad(torch.view_as_real(Y).sum(), xyz)
    assert float((g * xyz.detach()).sum(-1).abs().max()) < 1e-12


def test_float32_shapes_and_empty_batches():
    xyz = torch.randn(2, 3, 4, 3, generator=torch.Generator().manual_seed(1))
    Y = spherical_harmonics(3, xyz)
    assert Y.shape == (2, 3, 4, 7) and Y.dtype == torch.complex64
    assert float((Y.to(torch.complex128) - spherical_harmonics(3, xyz.double())).abs().max()) < 1e-6
    assert spherical_harmonics(2, torch.zeros(0, 3)).shape == (0, 5)
    assert spherical_harmonics(1, torch.tensor([1.0, 2.0, 2.0])).shape == (3,)
    every = spherical_harmonics_all(2, xyz.double())
    assert [tuple(y.shape) for y in every.values()] == [(2, 3, 4, 1), (2, 3, 4, 3), (2, 3, 4, 5)]


def test_backward_through_an_empty_batch():
    xyz = torch.zeros(0, 3, requires_grad=True)
    spherical_harmonics(2, xyz).real.sum().backward()
    assert xyz.grad.shape == (0, 3)


@pytest.mark.parametrize("call,error,message", [
    (lambda: spherical_harmonics(2, torch.ones(4, 2)), ValueError, r"shape \(\.\.\., 3\), got \(4, 2\)"),
    (lambda: spherical_harmonics(2, torch.ones(4, 3, dtype=torch.int64)), TypeError, "float32 or float64"),
    (lambda: spherical_harmonics(-1, torch.ones(4, 3)), ValueError, "non-negative integer"),
    (lambda: spherical_harmonics_all(1.5, torch.ones(4, 3)), ValueError, "non-negative integer"),
    (lambda: solid_harmonics(2, [1.0, 2.0, 3.0]), TypeError, "got list"),
    # |r|^2 overflow used to give Y^0 only and zeros for l > 0, and NaN counted as the origin
    (lambda: spherical_harmonics(1, torch.tensor([[1.0, 0, 0], [1e160, 2e160, 0]], dtype=torch.float64)),
     ValueError, r"vector \(1,\) = \[1e\+160, 2e\+160, 0.0\].*overflows float64.*\|r\| < 1.3e\+154"),
    (lambda: spherical_harmonics_all(2, torch.tensor([[[0.0, 3e19, 0]]])), ValueError,
     r"vector \(0, 0\).*overflows float32"),
    (lambda: spherical_harmonics(0, torch.tensor([[0.0, float("nan"), 1]])), ValueError,
     r"vector \(0,\).*not finite"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
