"""The real basis Q_l, real CG tables and the conversion to e3nn, checked against e3nn itself."""
import math

import numpy as np
import pytest
import torch
from e3nn import o3
from hypothesis import given, settings, strategies as st

from so3net.basis import (_wigner_D_numpy, change_of_basis, complex_to_real, e3nn_basis, e3nn_irreps, from_e3nn,
                          real_cg_block, real_cg_phase, real_to_complex, to_e3nn)
from so3net.cg import cg_block
from so3net.sph import spherical_harmonics
from so3net.wigner import random_rotation, wigner_D_from_matrix

LMAX = 6


def real_D(l: int, R: torch.Tensor) -> np.ndarray:
    Q = change_of_basis(l)
    D = Q @ wigner_D_from_matrix(l, R).numpy() @ Q.conj().T
    assert np.abs(D.imag).max() < 1e-13
    return D.real


def vectors(n=20, seed=0):
    return torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_Q_is_unitary_and_l1_is_y_z_x():
    for l in range(LMAX + 1):
        Q = change_of_basis(l)
        assert np.abs(Q @ Q.conj().T - np.eye(2 * l + 1)).max() < 1e-15
    v = vectors()
    Y1 = complex_to_real(spherical_harmonics(1, v)[..., None], 1)[..., 0]
    unit = v / v.norm(dim=-1, keepdim=True)
    expected = math.sqrt(3 / (4 * math.pi)) * unit[:, [1, 2, 0]]
    assert float((Y1 - expected).abs().max()) < 1e-15


def test_real_spherical_harmonics_are_real_and_rotate_by_orthogonal_matrices():
    v, R = vectors(), random_rotation(generator=torch.Generator().manual_seed(2))
    for l in range(LMAX + 1):
        Y = complex_to_real(spherical_harmonics(l, v).T, l)  # (2l+1, n)
        assert float(Y.imag.abs().max()) < 1e-15
        Yr = complex_to_real(spherical_harmonics(l, v @ R.T).T, l).real.numpy()
        D = real_D(l, R)
        assert np.abs(D @ D.T - np.eye(2 * l + 1)).max() < 1e-13
        assert np.abs(Yr - D @ Y.real.numpy()).max() < 1e-12


def test_real_cg_tables_are_real_and_intertwine():
    R = random_rotation(generator=torch.Generator().manual_seed(3))
    for l1 in range(4):
        for l2 in range(4):
            for l in range(abs(l1 - l2), l1 + l2 + 1):
                T = real_cg_block(l1, l2, l)
                assert T.dtype == np.float64 and not T.flags.writeable
                lhs = np.einsum("ai,bj,ijc->abc", real_D(l1, R), real_D(l2, R), T)
                assert np.abs(lhs - np.einsum("abk,kc->abc", T, real_D(l, R))).max() < 1e-12
                # definition: T = phase * sum conj(Q1) conj(Q2) C Q
                Q1, Q2, Q = change_of_basis(l1), change_of_basis(l2), change_of_basis(l)
                twisted = np.einsum("am,bn,mnk,ck->abc", Q1.conj(), Q2.conj(), cg_block(l1, l2, l), Q)
                assert np.abs(real_cg_phase(l1, l2, l) * twisted - T).max() < 1e-15
                # the untwisted table is real or imaginary by the parity of l1 + l2 + l
                assert np.abs((twisted.imag if (l1 + l2 + l) % 2 == 0 else twisted.real)).max() < 1e-15


def test_real_product_equals_complex_product_times_phase():
    x = torch.randn(5, dtype=torch.complex128, generator=torch.Generator().manual_seed(4))
    y = torch.randn(3, dtype=torch.complex128, generator=torch.Generator().manual_seed(5))
    for l in (1, 2, 3):
        z = torch.einsum("a,b,abc->c", x, y, torch.tensor(cg_block(2, 1, l), dtype=torch.complex128))
        xr, yr = complex_to_real(x[:, None], 2)[:, 0], complex_to_real(y[:, None], 1)[:, 0]
        zr = torch.einsum("a,b,abc->c", xr, yr, torch.tensor(real_cg_block(2, 1, l), dtype=torch.complex128))
        assert float((zr - real_cg_phase(2, 1, l) * complex_to_real(z[:, None], l)[:, 0]).abs().max()) < 1e-14


def test_equal_to_e3nn_spherical_harmonics():
    v = torch.cat([vectors(), torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)])
    for l in range(LMAX + 1):
        ours = to_e3nn(complex_to_real(spherical_harmonics(l, v)[..., None], l).real, l)
        theirs = o3.spherical_harmonics(l, v, normalize=True, normalization="integral")
        assert ours.shape == theirs.shape
        assert float((ours - theirs).abs().max()) < 1e-13


def test_equal_to_e3nn_wigner_3j():
    for l1 in range(LMAX - 1):
        for l2 in range(LMAX - 1):
            for l in range(abs(l1 - l2), l1 + l2 + 1):
                T = np.einsum("ai,bj,ck,ijk->abc", e3nn_basis(l1), e3nn_basis(l2), e3nn_basis(l),
                              real_cg_block(l1, l2, l))
                w3j = o3.wigner_3j(l1, l2, l, dtype=torch.float64).numpy()
                assert np.abs(T - math.sqrt(2 * l + 1) * w3j).max() < 1e-12, (l1, l2, l)


@settings(max_examples=10, deadline=None)
@given(st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: sum(c * c for c in q) > 0.01))
def test_equal_to_e3nn_wigner_D(q):
    """e3nn's wigner_D is only float32-accurate even in float64 (its generators are stored in
    float32; it disagrees with its own spherical harmonics by ~1e-6 at l = 6): tolerance 1e-5."""
    from so3net.wigner import quaternion_to_matrix
    R = quaternion_to_matrix(torch.tensor(q, dtype=torch.float64))
    angles = o3.matrix_to_angles(R)
    for l in range(LMAX + 1):
        B = e3nn_basis(l)
        assert np.abs(B @ real_D(l, R) @ B.T - o3.wigner_D(l, *angles).numpy()).max() < 1e-5


def test_e3nn_basis_is_the_axis_permutation():
    permutation = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # (y, z, x) -> (x, y, z)
    assert np.abs(e3nn_basis(1) - permutation).max() < 1e-15
    for l in range(LMAX + 1):
        B = e3nn_basis(l)
        assert np.abs(B @ B.T - np.eye(2 * l + 1)).max() < 1e-14


def test_numpy_wigner_D_agrees_with_wigner_module():
    R = random_rotation(generator=torch.Generator().manual_seed(8))
    for l in (0, 1, 5, 12, 30):
        ours = _wigner_D_numpy(l, tuple(map(tuple, R.tolist())))
        assert np.abs(ours - wigner_D_from_matrix(l, R).numpy()).max() < 1e-12


def test_e3nn_layout_is_multiplicity_major():
    v = vectors(4)
    part = v[:, [1, 2, 0]].T[None]  # one batch, l = 1 part of 4 vectors in the real basis (y, z, x)
    assert float((to_e3nn(part, 1) - v.reshape(1, 12)).abs().max()) < 1e-15
    assert float((from_e3nn(v.reshape(1, 12), 1) - part).abs().max()) < 1e-15
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    y = to_e3nn(x, 3)
    assert y.shape == (2, 3, 35)
    assert float((from_e3nn(y, 3) - x).abs().max()) < 1e-14
    xn = x.numpy()
    assert np.abs(to_e3nn(xn, 3) - y.numpy()).max() < 1e-15  # numpy arrays work too
    assert float((real_to_complex(complex_to_real(x, 3), 3) - x).abs().max()) < 1e-15


def test_e3nn_irreps_string():
    assert e3nn_irreps({0: 4, 1: 2, 2: 0, 3: 1}) == "4x0e+2x1o+1x3o"
    assert o3.Irreps(e3nn_irreps({0: 4, 1: 2, 3: 1})).dim == 4 + 6 + 7


@pytest.mark.parametrize("call,error,message", [
    (lambda: to_e3nn(torch.ones(2, 4, 3), 1), ValueError, r"2l\+1 = 3, got \(2, 4, 3\)"),
    (lambda: to_e3nn(torch.ones(2, 3, 3, dtype=torch.complex64), 1), TypeError, "complex_to_real first"),
    (lambda: from_e3nn(torch.ones(2, 10), 1), ValueError, r"n\*\(2l\+1\) with 2l\+1 = 3"),
    (lambda: complex_to_real([[1.0]], 0), TypeError, "numpy array or a torch tensor, got list"),
    (lambda: change_of_basis(-2), ValueError, "non-negative integer"),
    (lambda: real_cg_block(1, 1, 3), ValueError, r"\|l1-l2\| <= l <= l1\+l2"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
