"""The real basis end to end through SO3part/SO3vec: real storage, real tables, rotation by real
orthogonal matrices, equivariance of every product, the phase relation to the complex products,
basis round trips, CGpower, the graph engine, and e3nn's tensor products as an outside oracle.

Conventions pinned here (:mod:`so3net.basis`, :mod:`so3net.types.products`): real components
are ``Q_l x``; the real-basis (l1, l2) -> l block is ``(-i)^(l1+l2-l) Q_l CG(Q_l1^† x, Q_l2^† y)``;
``x -> (-i)^l Q_l^† x`` maps real-basis products onto complex-basis products.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import so3net
from so3net.basis import e3nn_irreps, from_e3nn, real_cg_block, real_cg_phase, to_e3nn
from so3net.power import CGpower
from so3net.types import CGproduct, CGsquare, DiagCGproduct, SO3part, SO3vec
from so3net.types.products import product_plan
from so3net.wigner import random_rotation

TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.complex64: 1e-5, torch.complex128: 1e-12}
FAST = settings(max_examples=12, deadline=None)
PRODUCTS = {"full": lambda x, y, maxl: CGproduct(x, y, maxl),
            "diag": lambda x, y, maxl: DiagCGproduct(x, y, maxl),
            "square": lambda x, y, maxl: CGsquare(x, maxl)}


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.numel() == 0:
        return
    scale = max(1.0, float(b.abs().max()))
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} (scale {scale:.3g})"


def close_vec(u, v, tol):
    assert u.tau == v.tau and u.basis == v.basis, (u.tau, v.tau, u.basis, v.basis)
    for l in u.parts:
        close(u.parts[l], v.parts[l], tol)


def twist(v: SO3vec) -> SO3vec:
    """Real basis -> complex basis by ``(-i)^l Q_l^†``: a homomorphism of every CG product."""
    c = v.to_basis("complex")
    return SO3vec({l: (-1j) ** l * p for l, p in c.parts.items()}, basis="complex")


def untwist(v: SO3vec) -> SO3vec:
    """Inverse of :func:`twist` (complex result in the real basis)."""
    return SO3vec({l: 1j ** l * p for l, p in v.parts.items()}, basis="complex").to_basis("real")


taus = st.lists(st.integers(0, 2), min_size=1, max_size=4).filter(any)
uniform_taus = st.tuples(st.integers(1, 3), st.lists(st.booleans(), min_size=1, max_size=4).filter(any)).map(
    lambda t: tuple(t[0] if keep else 0 for keep in t[1]))
batches = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
real_dtypes = st.sampled_from([torch.float32, torch.float64])


# ------------------------------------------------------------------------------- storage and tables
def test_randn_in_the_real_basis_is_real_and_products_stay_real():
    assert SO3vec.randn(4, (2, 1), basis="real", dtype=torch.float64).dtype == torch.float64
    assert SO3part.randn(4, 2, 3, basis="real").dtype == torch.float32
    x, y = SO3vec.randn(4, (2, 2, 2), basis="real"), SO3vec.randn(4, (2, 2, 2), basis="real")
    assert x.dtype == torch.float32 and x.basis == "real"
    for kind, product in PRODUCTS.items():
        z = product(x, y, None)
        assert z.dtype == torch.float32 and z.basis == "real", kind
        assert all(not p.is_complex() for p in z.parts.values())
    assert x[1].CGproduct(y[2], l=2).basis == "real"


def test_real_plan_tables_are_the_real_cg_blocks():
    plan = product_plan(SO3vec.randn(1, (1, 1, 1), basis="real"), SO3vec.randn(1, (1, 1, 1), basis="real"))
    assert plan.basis == "real" and plan.paths
    for p, (a, b, c, coef) in zip(plan.paths, plan.path_terms):
        T = np.zeros((2 * p.l1 + 1, 2 * p.l2 + 1, 2 * p.l + 1))
        T[a, b, c] = coef
        assert coef.dtype == np.float64
        np.testing.assert_array_equal(T, real_cg_block(p.l1, p.l2, p.l))


# ------------------------------------------------------------------------------- rotation
def test_real_rotation_matrices_are_real_orthogonal_and_a_representation():
    g = torch.Generator().manual_seed(3)
    R1, R2 = random_rotation(generator=g), random_rotation(generator=g)
    for l in range(5):
        eye = SO3part.identity(None, l, basis="real", dtype=torch.float64)
        D1, D2, D12 = (eye.rotate(R).data for R in (R1, R2, R1 @ R2))
        assert D1.dtype == torch.float64
        close(D1 @ D1.T, torch.eye(2 * l + 1, dtype=torch.float64), 1e-13)
        close(D1 @ D2, D12, 1e-12)


@FAST
@given(taus, batches, real_dtypes, st.integers(0, 2**31 - 1))
def test_rotate_commutes_with_the_change_of_basis(tau, batch, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = SO3vec.randn(batch, tau, basis="real", dtype=dtype, generator=g)
    R = random_rotation(*batch, generator=g)
    xr = x.rotate(R)
    assert xr.dtype == dtype and xr.basis == "real"
    close_vec(xr.to_basis("complex"), x.to_basis("complex").rotate(R), TOL[dtype])


# ------------------------------------------------------------------------------- equivariance
def _operands(kind, tau1, tau2, batch, dtype, g):
    x = SO3vec.randn(batch, tau1, basis="real", dtype=dtype, generator=g)
    y = SO3vec.randn(batch, tau1 if kind != "full" else tau2, basis="real", dtype=dtype, generator=g)
    return x, y


@FAST
@given(st.sampled_from(["full", "diag", "square"]), uniform_taus, taus, batches, real_dtypes,
       st.sampled_from([None, 0, 2, 4]), st.integers(0, 2**31 - 1))
def test_real_products_are_equivariant(kind, tau1, tau2, batch, dtype, maxl, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = _operands(kind, tau1, tau2, batch, dtype, g)
    R = random_rotation(*batch, generator=g, dtype=torch.float64)
    product = PRODUCTS[kind]
    z = product(x, y, maxl)
    assert z.dtype == dtype and z.basis == "real"
    close_vec(product(x.rotate(R), y.rotate(R), maxl), z.rotate(R), TOL[dtype])


# ------------------------------------------------------------------------------- relation to the complex basis
@FAST
@given(taus, taus, batches, st.integers(0, 2**31 - 1))
def test_real_product_is_the_basis_change_of_the_complex_product_times_the_phase(tau1, tau2, batch, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = _operands("full", tau1, tau2, batch, torch.float64, g)
    zc = CGproduct(x.to_basis("complex"), y.to_basis("complex")).to_basis("real")  # Q_l CG(Q^† x, Q^† y)
    phases = {l: torch.zeros(n, dtype=torch.complex128) for l, n in enumerate(zc.tau)}
    for p in product_plan(x, y).paths:
        phases[p.l][list(p.out)] = real_cg_phase(p.l1, p.l2, p.l)
    expected = SO3vec({l: part * phases[l] for l, part in zc.parts.items()}, basis="real")
    assert all(float(part.imag.abs().sum()) < 1e-12 * max(1, part.numel()) for part in expected.parts.values())
    close_vec(CGproduct(x, y).to(dtype=torch.complex128), expected, 1e-12)


@FAST
@given(st.sampled_from(["full", "diag", "square"]), uniform_taus, taus, batches, real_dtypes,
       st.integers(0, 2**31 - 1))
def test_twisted_change_of_basis_maps_real_products_to_complex_products(kind, tau1, tau2, batch, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = _operands(kind, tau1, tau2, batch, dtype, g)
    product = PRODUCTS[kind]
    close_vec(twist(product(x, y, None)), product(twist(x), twist(y), None), TOL[dtype])


def test_cgpower_in_the_real_basis():
    g = torch.Generator().manual_seed(5)
    x = SO3vec.randn(3, (2, 1, 1), basis="real", dtype=torch.float64, generator=g)
    R = random_rotation(3, generator=g, dtype=torch.float64)
    for k, maxl in ((2, None), (3, 2)):
        z = CGpower(x, k, maxl)
        assert z.basis == "real" and z.dtype == torch.float64
        assert z.tau == CGpower(x.to_basis("complex"), k, maxl).tau
        close_vec(CGpower(x.rotate(R), k, maxl), z.rotate(R), 1e-12)
        # each fragment is a chain of CG steps, so the twisted basis change is a homomorphism here too
        close_vec(twist(z), CGpower(twist(x), k, maxl), 1e-12)
    z32 = CGpower(x.to(dtype=torch.float32), 2)
    assert z32.dtype == torch.float32
    close_vec(z32.to(dtype=torch.float64), CGpower(x, 2), 1e-5)


# ------------------------------------------------------------------------------- conversions
@FAST
@given(taus, batches, real_dtypes, st.integers(0, 2**31 - 1))
def test_basis_round_trips(tau, batch, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = SO3vec.randn(batch, tau, basis="real", dtype=dtype, generator=g)
    c = x.to_basis("complex")
    assert c.basis == "complex" and c.dtype == (torch.complex64 if dtype == torch.float32 else torch.complex128)
    back = c.to_basis("real", dtype=dtype)
    assert back.dtype == dtype and back.basis == "real"
    close_vec(back, x, TOL[dtype])
    w = SO3vec.randn(batch, tau, dtype=c.dtype, generator=g)  # generic complex data: no real form
    close_vec(w.to_basis("real").to_basis("complex"), w, TOL[dtype])
    part = x[len(tau) - 1]
    close(part.to_basis("complex").to_basis("real", dtype=dtype).data, part.data, TOL[dtype])


def test_complex_form_of_real_data_converts_to_a_real_dtype_and_other_data_raises():
    xyz = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    Y = SO3vec({l: so3net.sph.spherical_harmonics(l, xyz)[..., None] for l in range(4)})  # complex form of real
    real = Y.to_basis("real", dtype=torch.float64)
    assert real.dtype == torch.float64
    close(real.parts[1][..., 0], np.sqrt(3 / (4 * np.pi)) * (xyz[:, [1, 2, 0]] / xyz.norm(dim=-1, keepdim=True)),
          1e-13)
    with pytest.raises(ValueError, match="not the complex form of real data"):
        SO3vec.randn(2, (1, 1), dtype=torch.complex128).to_basis("real", dtype=torch.float64)
    with pytest.raises(TypeError, match="complex basis stores"):
        real.to_basis("complex", dtype=torch.float64)
    with pytest.raises(ValueError, match="basis must be one of"):
        real.to_basis("cartesian")


# ------------------------------------------------------------------------------- autograd and the engine
def test_real_product_gradients():
    g = torch.Generator().manual_seed(2)
    x = SO3vec.randn(2, (1, 2), basis="real", dtype=torch.float64, generator=g).requires_grad_()
    y = SO3vec.randn(2, (2, 1), basis="real", dtype=torch.float64, generator=g).requires_grad_()

    def f(*parts):
        u, v = SO3vec(dict(enumerate(parts[:2])), basis="real"), SO3vec(dict(enumerate(parts[2:])), basis="real")
        return CGproduct(u, v).packed()
    assert torch.autograd.gradcheck(f, (*x.parts.values(), *y.parts.values()))

    # the graph engine's backward (its own CG products) equals torch autograd
    u = so3net.SO3vecVar(x.detach())
    z = so3net.CGproduct(u, u)
    gz = SO3vec.randn(2, z.value.tau, basis="real", dtype=torch.float64, generator=g)
    z.backward(gz)
    xt = x.detach().requires_grad_()
    (CGproduct(xt, xt).packed() * gz.packed()).sum().backward()
    close_vec(u.grad.value, SO3vec({l: p.grad for l, p in xt.parts.items()}, basis="real"), 1e-12)


# ------------------------------------------------------------------------------- e3nn as an outside oracle
def _to_e3nn_vec(v: SO3vec) -> torch.Tensor:
    return torch.cat([to_e3nn(p, l) for l, p in v.parts.items() if p.shape[-1]], -1)


def _e3nn_paths(tp, out: torch.Tensor):
    """Per instruction: (l1, l2, l, so3net real-basis part (b, 2l+1, mul)) of e3nn's output."""
    slices = tp.irreps_out.slices()
    for ins in tp.instructions:
        l1, l2 = tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l
        l = tp.irreps_out[ins.i_out].ir.l
        yield l1, l2, l, from_e3nn(out[..., slices[ins.i_out]], l)


@pytest.fixture
def float64_default():
    """e3nn builds its wigner_3j buffers in the default dtype; float64 keeps them exact to 1e-15."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.slow
def test_real_products_equal_e3nn_tensor_products(float64_default):
    from e3nn import o3
    g = torch.Generator().manual_seed(4)
    tau1, tau2 = (2, 1, 2), (1, 2)
    x = SO3vec.randn(5, tau1, basis="real", dtype=torch.float64, generator=g)
    y = SO3vec.randn(5, tau2, basis="real", dtype=torch.float64, generator=g)
    irreps1, irreps2 = e3nn_irreps(dict(enumerate(tau1))), e3nn_irreps(dict(enumerate(tau2)))
    # component normalisation without path normalisation: the path is sqrt(2l+1) wigner_3j = our table
    full = o3.FullTensorProduct(irreps1, irreps2, irrep_normalization="component", path_normalization="none")
    out = full(_to_e3nn_vec(x), _to_e3nn_vec(y))
    z, plan = CGproduct(x, y), product_plan(x, y)
    paths = {(p.l1, p.l2, p.l): p for p in plan.paths}
    for l1, l2, l, part in _e3nn_paths(full, out):
        close(z.parts[l][..., list(paths[l1, l2, l].out)], part, 1e-12)  # GElib order i*n2+j = e3nn's uvuv
    assert len(paths) == len(full.instructions)

    # channel-wise ("uuu") against DiagCGproduct
    v = SO3vec.randn(5, (3, 3, 3), basis="real", dtype=torch.float64, generator=g)
    w = SO3vec.randn(5, (3, 3, 3), basis="real", dtype=torch.float64, generator=g)
    irreps = o3.Irreps(e3nn_irreps({0: 3, 1: 3, 2: 3}))
    dplan = product_plan(v, w, kind="diag", maxl=2)
    irreps_out = o3.Irreps([(3, (p.l, (-1) ** (p.l1 + p.l2))) for p in dplan.paths])
    instructions = [(p.l1, p.l2, k, "uuu", False) for k, p in enumerate(dplan.paths)]
    tp = o3.TensorProduct(irreps, irreps, irreps_out, instructions, irrep_normalization="component",
                          path_normalization="none")
    out = tp(_to_e3nn_vec(v), _to_e3nn_vec(w))
    d = DiagCGproduct(v, w, maxl=2)
    for (l1, l2, l, part), p in zip(_e3nn_paths(tp, out), dplan.paths):
        assert (l1, l2, l) == (p.l1, p.l2, p.l)
        close(d.parts[l][..., list(p.out)], part, 1e-12)
