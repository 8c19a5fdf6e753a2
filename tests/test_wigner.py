"""Wigner D matrices and rotations: representation property, unitarity, CG intertwining,
spherical-harmonic covariance, D^1 = U R U^†, parametrisations (incl. gimbal lock), Haar measure."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from so3net.cg import cg_block
from so3net.sph import spherical_harmonics
from so3net.types import SO3vec
from so3net.wigner import (cartesian_to_spherical, euler_to_matrix, matrix_to_euler, matrix_to_quaternion,
                           quaternion_to_matrix, random_rotation, rotation_y, rotation_z, wigner_D,
                           wigner_D_from_matrix, wigner_d)

SETTINGS = settings(max_examples=15, deadline=None)
TOL = 1e-10

unit = st.floats(-1.0, 1.0, allow_nan=False)
quaternions = st.tuples(unit, unit, unit, unit).filter(lambda q: sum(c * c for c in q) > 0.01)
degrees = st.integers(0, 12)


def rotation(q) -> torch.Tensor:
    return quaternion_to_matrix(torch.tensor(q, dtype=torch.float64))


def err(a, b) -> float:
    return float((a - b).abs().max())


@SETTINGS
@given(quaternions, quaternions, degrees)
def test_representation(q1, q2, l):
    R1, R2 = rotation(q1), rotation(q2)
    assert err(wigner_D_from_matrix(l, R1) @ wigner_D_from_matrix(l, R2), wigner_D_from_matrix(l, R1 @ R2)) < TOL


@SETTINGS
@given(quaternions, degrees)
def test_unitary(q, l):
    D = wigner_D_from_matrix(l, rotation(q))
    assert err(D @ D.conj().T, torch.eye(2 * l + 1, dtype=D.dtype)) < TOL


@SETTINGS
@given(quaternions, st.data())
def test_cg_intertwines(q, data):
    """(D^{l1} ⊗ D^{l2}) C = C D^l for every block with l1, l2, l <= 12."""
    l1, l2 = data.draw(degrees), data.draw(degrees)
    l = data.draw(st.integers(abs(l1 - l2), min(l1 + l2, 12)))
    R = rotation(q)
    D1, D2, D = (wigner_D_from_matrix(k, R) for k in (l1, l2, l))
    C = torch.tensor(cg_block(l1, l2, l), dtype=torch.complex128)
    assert err(torch.einsum("ai,bj,ijc->abc", D1, D2, C), torch.einsum("abk,kc->abc", C, D)) < TOL


@SETTINGS
@given(quaternions, degrees)
def test_spherical_harmonics_transform_with_D(q, l):
    """Y^l(R r) = D^l(R) Y^l(r)."""
    R = rotation(q)
    r = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(l))
    assert err(spherical_harmonics(l, r @ R.T), spherical_harmonics(l, r) @ wigner_D_from_matrix(l, R).T) < TOL


@SETTINGS
@given(quaternions)
def test_D1_is_the_rotation_matrix_in_the_spherical_basis(q):
    R = rotation(q)
    U = cartesian_to_spherical()
    assert err(wigner_D_from_matrix(1, R), U @ R.to(U.dtype) @ U.conj().T) < 1e-14
    assert err(U @ U.conj().T, torch.eye(3, dtype=U.dtype)) < 1e-15


def test_euler_convention_is_zyz():
    a, b, g = 0.3, 1.1, -2.0
    assert err(euler_to_matrix(a, b, g), rotation_z(a) @ rotation_y(b) @ rotation_z(g)) < 1e-15
    assert err(rotation_z(math.pi / 2) @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
               torch.tensor([0.0, 1, 0], dtype=torch.float64)) < 1e-15  # active rotation
    m = torch.arange(-2, 3, dtype=torch.float64)
    expected = torch.exp(1j * m[:, None] * a) * wigner_d(2, b) * torch.exp(1j * m[None, :] * g)
    assert err(wigner_D(2, a, b, g), expected) < 1e-15


@SETTINGS
@given(quaternions)
def test_matrix_euler_round_trip(q):
    R = rotation(q)
    assert err(euler_to_matrix(*matrix_to_euler(R)), R) < 1e-12


@pytest.mark.parametrize("beta", [0.0, 1e-13, 1e-9, 1e-7, math.pi, math.pi - 1e-9, math.pi - 1e-13])
def test_gimbal_lock(beta):
    alpha, gamma = torch.tensor([0.7, -2.9, 3.1]), torch.tensor([1.9, 0.4, -3.0])
    R = euler_to_matrix(alpha.double(), torch.full((3,), beta, dtype=torch.float64), gamma.double())
    a, b, g = matrix_to_euler(R)
    assert torch.isfinite(torch.stack([a, b, g])).all()
    assert err(euler_to_matrix(a, b, g), R) < 1e-12
    for l in (1, 4):
        assert err(wigner_D(l, a, b, g), wigner_D(l, alpha.double(), torch.full((3,), beta, dtype=torch.float64),
                                                    gamma.double())) < 1e-9


@SETTINGS
@given(quaternions)
def test_quaternion_round_trips(q):
    q = torch.tensor(q, dtype=torch.float64)
    q = q / q.norm()
    R = quaternion_to_matrix(q)
    back = matrix_to_quaternion(R)
    assert back[0] >= 0
    assert min(err(back, q), err(back, -q)) < 1e-12
    assert err(quaternion_to_matrix(back), R) < 1e-12


def test_random_rotations_are_rotations_and_reproducible():
    R = random_rotation(50, generator=torch.Generator().manual_seed(1))
    assert R.shape == (50, 3, 3) and R.dtype == torch.float64
    assert err(R @ R.transpose(-1, -2), torch.eye(3, dtype=R.dtype).expand(50, 3, 3)) < 1e-14
    assert torch.allclose(torch.linalg.det(R), torch.ones(50, dtype=R.dtype))
    assert torch.equal(R, random_rotation(50, generator=torch.Generator().manual_seed(1)))
    assert random_rotation(2, 3, dtype=torch.float32).shape == (2, 3, 3, 3)


def test_haar_measure():
    """Schur orthogonality under Haar measure: E[D^l] = 0 for l > 0, E[|D^l_mn|^2] = 1/(2l+1)."""
    R = random_rotation(20000, generator=torch.Generator().manual_seed(7))
    for l in (1, 3):
        D = wigner_D_from_matrix(l, R)
        assert float(D.mean(0).abs().max()) < 0.04
        assert float((D.abs() ** 2).mean(0).sub(1 / (2 * l + 1)).abs().max()) < 0.02
    # a biased sampler fails the same check: rotations about z only
    Dz = wigner_D(1, torch.rand(20000, dtype=torch.float64) * 2 * math.pi, 0.0, 0.0)
    assert float(Dz.mean(0).abs().max()) > 0.5


def test_large_l_accuracy():
    l = 30
    R1, R2 = random_rotation(2, generator=torch.Generator().manual_seed(3))
    D1, D2 = wigner_D_from_matrix(l, R1), wigner_D_from_matrix(l, R2)
    assert err(D1 @ D2, wigner_D_from_matrix(l, R1 @ R2)) < 1e-10
    assert err(D1 @ D1.conj().T, torch.eye(2 * l + 1, dtype=D1.dtype)) < 1e-12
    b1, b2 = 0.4, 2.3
    assert err(wigner_d(l, b1) @ wigner_d(l, b2), wigner_d(l, b1 + b2)) < 1e-12


def test_batching_and_dtypes():
    a = torch.rand(4, 5, dtype=torch.float64)
    D = wigner_D(2, a, a * 0.5, -a)
    assert D.shape == (4, 5, 5, 5) and D.dtype == torch.complex128
    assert err(D[1, 2], wigner_D(2, a[1, 2], a[1, 2] * 0.5, -a[1, 2])) < 1e-15
    D32 = wigner_D(3, torch.tensor(0.3), torch.tensor(0.2), torch.tensor(0.1))
    assert D32.dtype == torch.complex64
    R = random_rotation(2, 3, generator=torch.Generator().manual_seed(0))
    assert wigner_D_from_matrix(1, R).shape == (2, 3, 3, 3)


def test_errors():
    with pytest.raises(ValueError, match="non-negative integer"):
        wigner_D_from_matrix(-1, torch.eye(3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        wigner_D_from_matrix(1, torch.eye(4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        quaternion_to_matrix(torch.ones(3))
    with pytest.raises(ValueError, match="non-negative integer"):
        wigner_d(1.5, 0.3)


@pytest.mark.parametrize("name, matrix, words", [
    ("reflection", torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)), ["det", "-1"]),
    ("scaled", 2 * torch.eye(3, dtype=torch.float64), ["orthogonal", "R^T R"]),
    ("sheared", torch.tensor([[1.0, 0.3, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64), ["orthogonal"]),
    ("not finite", torch.full((3, 3), float("nan"), dtype=torch.float64), ["finite"]),
])
def test_only_rotations_are_accepted(name, matrix, words):
    """A reflection used to give the identity D; every non-rotation now raises, naming the matrix."""
    R = random_rotation(4, generator=torch.Generator().manual_seed(0))
    R[2] = matrix
    for call in (lambda: wigner_D_from_matrix(1, R), lambda: SO3vec.randn(4, (1, 1)).rotate(R)):
        with pytest.raises(ValueError, match=r"rotation matrices") as info:
            call()
        for word in [*words, "index (2,)", "det R = +1"]:
            assert word in str(info.value)


def test_rotations_within_float32_round_off_are_accepted():
    R = random_rotation(50, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    R = R @ R @ R                                           # round-off of a few float32 products
    D = wigner_D_from_matrix(2, R)
    x = SO3vec.randn(50, (1, 1, 1), dtype=torch.complex64)
    assert x.rotate(R).parts[2].shape == (50, 5, 1) and torch.isfinite(D.real).all()
