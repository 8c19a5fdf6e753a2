"""SO3type, SO3part, SO3vec and the scalar types: storage, constructors, printing, arithmetic,
the group action, and the error messages of misuse."""
import pickle
import re

import pytest
import torch

from so3net.types import (Cscalar, Ctensor, Rscalar, SO3part, SO3type, SO3vec, cat, oplus)
from so3net.wigner import random_rotation, wigner_D_from_matrix

ENTRY = r"\((-?[0-9.e+-]+|-?inf|nan),(-?[0-9.e+-]+|-?inf|nan)\)"


def close(a, b, tol=1e-12):
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} (scale {scale:.3g})"


# ---------------------------------------------------------------------------------------- SO3type
def test_sotype_is_an_immutable_hashable_tuple_that_prints_like_gelib():
    tau = SO3type((2, 3, 1))
    assert str(tau) == "(2,3,1)" and repr(tau) == "SO3type((2,3,1))"
    assert tau == (2, 3, 1) and hash(tau) == hash((2, 3, 1)) and {tau: 1}[(2, 3, 1)] == 1
    assert (tau[0], tau[2], tau.maxl, tau.dim) == (2, 1, 2, 2 + 9 + 5)
    assert pickle.loads(pickle.dumps(tau)) == tau and type(pickle.loads(pickle.dumps(tau))) is SO3type
    with pytest.raises(TypeError):
        tau[0] = 5


def test_sotype_direct_sum_scaling_and_trim():
    assert SO3type((1, 2)) + (0, 1, 4) == (1, 3, 4)
    assert (0, 1, 4) + SO3type((1, 2)) == (1, 3, 4)
    assert 3 * SO3type((1, 0, 2)) == (3, 0, 6)
    assert SO3type((1, 2, 0, 0)).trimmed() == (1, 2) and SO3type((0, 0)).trimmed() == (0,)


@pytest.mark.parametrize("bad, match", [((1, -1), "non-negative"), ((1, 1.5), "non-negative"), ((), "at least one"),
                                        ("12", "sequence"), ({1, 2}, "sequence"), (3, "sequence")])
def test_sotype_rejects_bad_counts(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        SO3type(bad)


def test_sotype_product_types():
    one = SO3type((1, 1))
    assert one.CGproduct(one) == (2, 3, 1)
    assert one.CGproduct(one, maxl=1) == (2, 3)
    assert one.CGsquare() == (2, 1, 1)  # l=0: 0x0, 1x1; l=1: 0x1 (1x1 antisymmetric vanishes); l=2: 1x1
    assert SO3type((2, 2)).DiagCGproduct((2, 2)) == (4, 6, 2)
    with pytest.raises(ValueError, match="equal types"):
        one.DiagCGproduct((1, 2))
    with pytest.raises(ValueError, match="maxl"):
        one.CGproduct(one, maxl=-1)


# ---------------------------------------------------------------------------------------- SO3part
def test_part_layout_constructors_and_fills():
    p = SO3part.sequential((2, 3), 2, 4)
    assert p.shape == (2, 3, 5, 4) and (p.l, p.n, p.batch) == (2, 4, (2, 3)) and p.dtype == torch.complex64
    assert torch.equal(p.data.reshape(-1).real, torch.arange(2 * 3 * 5 * 4, dtype=torch.float32))
    e = SO3part.identity(None, 1)
    assert e.shape == (3, 3) and torch.equal(e.data, torch.eye(3, dtype=torch.complex64))
    assert SO3part.zeros(4, 0, 2).data.abs().sum() == 0 and torch.all(SO3part.ones(4, 1, 2).data == 1)
    g = torch.Generator().manual_seed(3)
    r = SO3part.randn(5, 1, 2, dtype=torch.complex128, generator=g)
    assert r.dtype == torch.complex128 and r.data.imag.abs().sum() > 0
    assert SO3part.randn(2, 1, 3, basis="real").dtype == torch.float32


@pytest.mark.parametrize("shape, l_msg", [((3, 4, 8), "2l\\+1"), ((5,), "2l\\+1")])
def test_part_rejects_wrong_shape(shape, l_msg):
    with pytest.raises(ValueError, match=l_msg):
        SO3part(torch.zeros(shape, dtype=torch.complex64))


def test_part_rejects_real_dtype_in_complex_basis():
    with pytest.raises(TypeError, match="basis='real'"):
        SO3part(torch.zeros(2, 3, 1))


def test_part_arithmetic_mixing_slicing_and_direct_sum():
    torch.manual_seed(0)
    p, q = SO3part.randn(3, 2, 4, dtype=torch.complex128), SO3part.randn(3, 2, 4, dtype=torch.complex128)
    close((p + q - q).data, p.data)
    close((2.5 * p).data, 2.5 * p.data)
    close((p * Cscalar(1j, dtype=torch.complex128)).data, 1j * p.data)
    s = torch.arange(3, dtype=torch.float64)
    close((p * s).data, p.data * s[:, None, None])
    W = torch.randn(4, 6, dtype=torch.float64)
    close((p @ W).data, torch.einsum("bmi,ij->bmj", p.data, W.to(p.dtype)))
    close(p.fragments(slice(1, 3)).data, p.data[..., 1:3])
    assert p.fragments(2).n == 1
    close(p.oplus(q).data, torch.cat([p.data, q.data], -1))
    close(p.inp(p).real, p.norm() ** 2)
    close(p.conj().data, p.data.conj())


def test_part_rotate_composes_and_matches_apply():
    torch.manual_seed(1)
    p = SO3part.randn(4, 3, 2, dtype=torch.complex128)
    R1, R2 = random_rotation(), random_rotation(4)
    close(p.rotate(R1).rotate(R2).data, p.rotate(R2 @ R1).data)
    close(p.rotate(R2).data, p.apply(wigner_D_from_matrix(3, R2)).data)
    close(p.rotate(R1).norm(), p.norm())  # D is unitary


def test_part_misuse_messages():
    p = SO3part.randn(2, 1, 3)
    with pytest.raises(ValueError, match=r"l=1, n=3\) and \(l=2, n=3\)"):
        p + SO3part.randn(2, 2, 3)
    with pytest.raises(TypeError, match="dtypes"):
        p + SO3part.randn(2, 1, 3, dtype=torch.complex128)
    with pytest.raises(TypeError, match="CGproduct"):
        p * p
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3, n_out\)"):
        p @ torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        p.rotate(torch.eye(2))
    with pytest.raises(ValueError, match="batch"):
        p * torch.ones(5)
    with pytest.raises(TypeError, match="complex scalar"):
        SO3part.randn(2, 1, 3, basis="real") * 1j


# ---------------------------------------------------------------------------------------- SO3vec
def test_vec_constructors_and_type():
    tau = SO3type((2, 0, 1))
    v = SO3vec(tau, fill="gaussian")
    assert v.tau == tau and v.batch == () and list(v.parts) == [0, 1, 2] and v.parts[1].shape == (3, 0)
    w = SO3vec.randn((4, 2), (1, 1), dtype=torch.complex128)
    assert w.batch == (4, 2) and w.dtype == torch.complex128 and w.parts[1].shape == (4, 2, 3, 1)
    for make in (SO3vec.zeros, SO3vec.ones, SO3vec.sequential, SO3vec.identity):
        assert make(3, tau).tau == tau
    assert SO3vec((1, 2), "identity", batch=2).parts[1][0, :, 1].tolist() == [0, 1, 0]
    parts = SO3vec({0: torch.zeros(5, 1, 2, dtype=torch.complex64), 2: SO3part.randn(5, 2, 3)})
    assert parts.tau == (2, 0, 3) and parts.batch == (5,)
    assert SO3vec([torch.zeros(1, 3), torch.zeros(3, 2)], basis="real").tau == (3, 2)


def test_vec_packed_layout_roundtrip():
    v = SO3vec.sequential((2,), (2, 1, 1))
    t = v.packed()
    assert t.shape == (2, 2 + 3 + 5)
    close(t[1, :2], v.parts[0][1].reshape(-1))
    close(t[1, 2:5], v.parts[1][1].reshape(-1))
    close(t[1, 5:], v.parts[2][1].reshape(-1))
    back = SO3vec.from_packed(t, v.tau)
    assert all(torch.equal(back.parts[l], v.parts[l]) for l in v.parts)
    with pytest.raises(ValueError, match=r"\(b\.\.\., 10\)"):
        SO3vec.from_packed(t[:, :9], v.tau)


def test_vec_to_and_grad():
    v = SO3vec.randn(3, (1, 2)).to(dtype=torch.complex128)
    assert v.dtype == torch.complex128 and v.to("cpu").device.type == "cpu"
    v.requires_grad_()
    assert v.requires_grad and not v.detach().requires_grad
    with pytest.raises(TypeError, match="complex basis stores"):
        v.to(dtype=torch.float32)


def test_vec_arithmetic_and_mixing_commute_with_rotation():
    torch.manual_seed(2)
    tau = SO3type((2, 3, 1))
    u, v = SO3vec.randn(4, tau, dtype=torch.complex128), SO3vec.randn(4, tau, dtype=torch.complex128)
    R = random_rotation(4)
    W = {l: torch.randn(n, 5, dtype=torch.complex128) for l, n in enumerate(tau)}
    lhs = ((u + v) * W * Rscalar(2.0, dtype=torch.float64) - u * [W[0], W[1], W[2]]).rotate(R)
    rhs = (u.rotate(R) + v.rotate(R)) * W * 2.0 - u.rotate(R) * W
    for l in range(3):
        close(lhs.parts[l], rhs.parts[l])
    assert (u * W).tau == (5, 5, 5)
    sparse = SO3vec.randn(2, (2, 0, 1))
    assert (sparse * {0: torch.ones(2, 3), 2: torch.ones(1, 4)}).tau == (3, 0, 4)
    assert (sparse * [torch.ones(2, 3), None, torch.ones(1, 4)]).tau == (3, 0, 4)


def test_vec_direct_sum_slicing_conj_inner_products():
    torch.manual_seed(3)
    u, v = SO3vec.randn(2, (1, 2), dtype=torch.complex128), SO3vec.randn(2, (2, 0, 1), dtype=torch.complex128)
    s = cat([u, v])
    assert s.tau == (3, 2, 1) == u.tau + v.tau and oplus is cat and u.oplus(v).tau == s.tau
    close(s.parts[0][..., 1:], v.parts[0])
    f = s.fragments({0: slice(0, 1), 1: [1]})
    assert f.tau == (1, 1, 1)
    close(f.parts[1], s.parts[1][..., [1]])
    close(u.conj().parts[1], u.parts[1].conj())
    ip, nrm = u.inp(u), u.norm()
    for l in (0, 1):
        close(ip[l].real, nrm[l] ** 2)
        close(u.rotate(random_rotation()).norm()[l], nrm[l])


def test_vec_apply_matches_rotate():
    v = SO3vec.randn((2, 3), (1, 1, 1), dtype=torch.complex128)
    R = random_rotation(3)
    applied = v.apply({l: wigner_D_from_matrix(l, R) for l in range(3)})
    for l in range(3):
        close(applied.parts[l], v.rotate(R).parts[l])


def test_vec_misuse_messages():
    v = SO3vec.randn(2, (1, 1))
    with pytest.raises(ValueError, match=r"one type; got \(1,1\) and \(1,2\)"):
        v + SO3vec.randn(2, (1, 2))
    with pytest.raises(ValueError, match="do not broadcast"):
        v + SO3vec.randn(3, (1, 1))
    with pytest.raises(ValueError, match=r"missing l=\[1\]"):
        v * {0: torch.eye(1)}
    with pytest.raises(ValueError, match=r"beyond the parts"):
        v * [torch.eye(1), torch.eye(1), torch.eye(1)]
    with pytest.raises(TypeError, match="float64; expected torch.complex64 or torch.float32"):
        v * [torch.eye(1, dtype=torch.float64), torch.eye(1)]
    with pytest.raises(ValueError, match=r"2l\+1 = 3 for l=1"):
        SO3vec({0: torch.zeros(2, 1, 1, dtype=torch.complex64), 1: torch.zeros(2, 5, 1, dtype=torch.complex64)})
    with pytest.raises(ValueError, match="one batch shape"):
        SO3vec({0: torch.zeros(2, 1, 1, dtype=torch.complex64), 1: torch.zeros(3, 3, 1, dtype=torch.complex64)})
    with pytest.raises(TypeError, match="dtypes"):
        SO3vec({0: torch.zeros(1, 1, dtype=torch.complex64), 1: torch.zeros(3, 1, dtype=torch.complex128)})
    with pytest.raises(IndexError, match=r"l = 0\.\.1, got 5"):
        v[5]
    with pytest.raises(ValueError, match="fill must be one of"):
        SO3vec((1, 1), fill="random")
    with pytest.raises(ValueError, match="basis"):
        SO3vec.randn(2, (1,), basis="cartesian")


# ---------------------------------------------------------------------------------------- printing
def test_print_format_is_the_talks_and_shows_the_values():
    v = SO3vec.randn(None, (1, 2), dtype=torch.complex128)
    text = str(v)
    lines = text.splitlines()
    assert lines[0] == "Part l=0:" and lines[2] == "Part l=1:" and len(lines) == 5
    for line, (l, i) in zip([lines[1], lines[3], lines[4]], [(0, 0), (1, 0), (1, 1)]):
        assert re.fullmatch(r"\[ " + " ".join([ENTRY] * (2 * l + 1)) + r" \]", line), line
        values = [complex(float(a), float(b)) for a, b in re.findall(ENTRY, line)]
        close(torch.tensor(values), v.parts[l][:, i].to(torch.complex128), tol=1e-5)
    assert repr(v) == "SO3vec(tau=(1,2), batch=(), dtype=complex128, basis=complex, device=cpu)"


def test_print_batched_and_real():
    text = str(SO3vec.ones((2, 1), (1,), basis="real"))
    assert text == "Batch (0,0):\nPart l=0:\n[ 1 ]\nBatch (1,0):\nPart l=0:\n[ 1 ]"
    assert str(SO3part.zeros(20, 0, 1)).endswith("... (12 more samples)")
    assert "SO3part(l=0, n=1, batch=(20,)" in repr(SO3part.zeros(20, 0, 1))


# ---------------------------------------------------------------------------------------- scalars
def test_scalar_types():
    assert float(Rscalar(2)) == 2.0 and Rscalar(2).dtype == torch.float32
    assert complex(Cscalar(1 + 2j)) == 1 + 2j and str(Cscalar(1 + 2j)) == "(1,2)"
    with pytest.raises(TypeError, match="Cscalar"):
        Rscalar(1j)
    t = Ctensor.randn(2, 3)
    assert t.shape == (2, 3) and (t + t).shape == (2, 3) and (t @ Ctensor.zeros(3, 1)).shape == (2, 1)
    first_row = str(t).splitlines()[0]
    assert len(str(t).splitlines()) == 2 and re.fullmatch(r"\[ " + " ".join([ENTRY] * 3) + r" \]", first_row)
