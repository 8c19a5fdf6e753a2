"""Symmetric tensor powers: characters, the compiled program, CGpower, and the weighted contraction."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import so3net.graph as G
from so3net.kernels.torch_cg import cg_product
from so3net.plan import cg_plan
from so3net.power import CGpower, power_program, sym_power_multiplicities
from so3net.power.characters import irrep_character, sym_power_character, type_character
from so3net.power.contraction import SymmetricContraction, contraction_program, symmetric_contraction
from so3net.types import SO3vec
from so3net.wigner import random_rotation, wigner_D_from_matrix

SETTINGS = settings(max_examples=12, deadline=None)
small_tau = st.lists(st.integers(0, 2), min_size=1, max_size=3).filter(lambda t: sum(t) > 0).map(tuple)


def random_parts(tau, batch=(4,), dtype=torch.complex128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {l: torch.randn(*batch, 2 * l + 1, n, dtype=dtype, generator=g) for l, n in enumerate(tau)}


def rotate(parts, R):
    return {l: wigner_D_from_matrix(l, R).to(p.dtype) @ p for l, p in parts.items()}


def rank(A, rtol=1e-9):
    s = np.linalg.svd(A, compute_uv=False)
    return int((s > rtol * s[0]).sum()) if s.size else 0


# ----------------------------------------------------------------------------- characters
@SETTINGS
@given(tau=st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(lambda t: sum(t) > 0).map(tuple),
       k=st.integers(1, 5))
def test_sym_power_dimension(tau, k):
    d = sum((2 * l + 1) * n for l, n in enumerate(tau))
    mult = sym_power_multiplicities(tau, k)
    assert sum((2 * L + 1) * m for L, m in enumerate(mult)) == math.comb(d + k - 1, k)


@SETTINGS
@given(tau=small_tau)
def test_sym_square_matches_square_plan(tau):
    square = cg_plan(tau, tau, kind="square").tau_out
    assert sym_power_multiplicities(tau, 2) == tuple(square)


def test_newton_matches_cycle_index_formulas():
    chi = type_character((1, 2, 1))
    theta = np.random.default_rng(1).uniform(0, 2 * np.pi, 7)
    p = [None] + [chi.value(j * theta) for j in range(1, 5)]
    expected = {2: (p[1] ** 2 + p[2]) / 2,
                3: (p[1] ** 3 + 3 * p[1] * p[2] + 2 * p[3]) / 6,
                4: (p[1] ** 4 + 6 * p[1] ** 2 * p[2] + 3 * p[2] ** 2 + 8 * p[1] * p[3] + 6 * p[4]) / 24}
    for k, value in expected.items():
        np.testing.assert_allclose(sym_power_character(chi, k).value(theta), value, rtol=1e-12)


def test_multiplicity_is_weyl_integral():
    chi = sym_power_character(type_character((2, 1, 1)), 3)
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    for L, m in enumerate(chi.decompose()):
        integrand = chi.value(theta) * irrep_character(L).value(theta) * np.sin(theta / 2) ** 2
        assert m == round(2 * integrand.mean())


# ----------------------------------------------------------------------------- program structure
@SETTINGS
@given(tau=small_tau, k=st.integers(2, 4), data=st.data())
def test_output_type_is_character_type(tau, k, data):
    lmax = max(l for l, n in enumerate(tau) if n)
    maxl = data.draw(st.one_of(st.none(), st.integers(0, k * lmax)))
    program = power_program(tau, (k,), maxl)
    top = k * lmax if maxl is None else maxl
    assert program.out_type(k) == sym_power_multiplicities(tau, k, top)
    out = CGpower(random_parts(tau, batch=(2,)), k, maxl)
    assert tuple(out[L].shape[-1] for L in range(top + 1)) == program.out_type(k)


def test_flops_k3_tau888_at_least_4x_below_naive():
    program = power_program((8, 8, 8), (3,))
    ratio = program.naive_flops() / program.flops()
    print(f"Sym^3 of (8,8,8): {program.flops()} vs naive {program.naive_flops()} flops/sample ({ratio:.2f}x)")
    assert ratio >= 4


@pytest.mark.parametrize("tau", [(2, 1), (1, 1, 1), (0, 3)])
def test_square_program_is_no_costlier_than_square_plan(tau):
    program = power_program(tau, (2,))
    assert program.flops() <= cg_plan(tau, tau, kind="square").flops()
    assert program.out_type(2) == cg_plan(tau, tau, kind="square").tau_out


def test_degrees_compiled_together_give_the_same_outputs():
    tau, maxl = (1, 2, 1), 3
    x = torch.randn(5, sum((2 * l + 1) * n for l, n in enumerate(tau)), dtype=torch.complex128)
    together = power_program(tau, (1, 2, 3), maxl)(x)
    for j, out in zip((1, 2, 3), together):
        torch.testing.assert_close(out, power_program(tau, (j,), maxl)(x)[0], rtol=0, atol=0)


def test_listing_shows_every_output_node():
    program = power_program((1, 1), (3,))
    text = program.listing(fragments=True)
    assert text.startswith("SPprogram TensorPower3")
    for L, n in enumerate(program.out_type(3)):
        assert (f"deg3 (l={L}) (x{n}) out" in text) == (n > 0)
    assert text.count("multiset (") == sum(sum(p.tau_out) for p in program.plans)


# ----------------------------------------------------------------------------- CGpower properties
@pytest.mark.parametrize("k", [2, 3, 4])
def test_equivariant_and_homogeneous(k):
    tau = (1, 2, 1)
    v = random_parts(tau, seed=k)
    out = CGpower(v, k)
    for R in random_rotation(2, dtype=torch.float64, generator=torch.Generator().manual_seed(k)):
        rotated = CGpower(rotate(v, R), k)
        for L, part in rotate(out, R).items():
            torch.testing.assert_close(rotated[L], part, rtol=1e-10, atol=1e-10)
    t = 0.7 - 0.4j
    scaled = CGpower({l: t * p for l, p in v.items()}, k)
    for L, part in out.items():
        torch.testing.assert_close(scaled[L], t ** k * part, rtol=1e-10, atol=1e-10)


def naive_power(x, tau, k, caps):
    """Repeated full CGproduct ((x ⊗ x) ⊗ x) ...: all ordered fragment tuples."""
    z, current = x, tuple(tau)
    for j in range(2, k + 1):
        plan = cg_plan(current, tau, caps[j], "full")
        z, current = cg_product(z, x, plan), plan.tau_out
    return z, current


def columns(packed, tau, L, batch):
    """Rows (sample, m), columns fragments of part L of a packed vector of type tau."""
    start = sum((2 * l + 1) * n for l, n in enumerate(tau[:L]))
    n = tau[L] if L < len(tau) else 0
    return packed[:, start:start + (2 * L + 1) * n].reshape(batch * (2 * L + 1), n).numpy()


@pytest.mark.parametrize("tau,k", [((1, 1, 1), 2), ((2, 1), 3), ((1, 1, 1), 3), ((1, 1), 4),
                                   pytest.param((0, 2), 4, marks=pytest.mark.slow)])
def test_independent_and_spans_symmetrised_full_product(tau, k):
    program = power_program(tau, (k,))
    batch = 2 * max(program.out_type(k)) + 16
    x = torch.randn(batch, sum((2 * l + 1) * n for l, n in enumerate(tau)), dtype=torch.complex128,
                    generator=torch.Generator().manual_seed(7))
    ours = program(x)[0]
    lmax = max(l for l, n in enumerate(tau) if n)
    naive, naive_tau = naive_power(x, tau, k, {j: j * lmax for j in range(2, k + 1)})
    for L, n in enumerate(program.out_type(k)):
        A = columns(ours, program.out_type(k), L, batch)
        N = columns(naive, naive_tau, L, batch)
        assert rank(A) == n, f"Sym^{k} fragments at L={L} are dependent"
        assert rank(np.concatenate([A, N], 1)) == n, f"the full product at L={L} leaves the span"


def test_gradient_matches_finite_differences():
    tau = (1, 1)
    v = random_parts(tau, batch=(2,), seed=3)
    leaves = [v[0].requires_grad_(), v[1].requires_grad_()]
    torch.autograd.gradcheck(lambda a, b: tuple(CGpower({0: a, 1: b}, 3).values()), leaves)


def test_batch_shapes_and_dtype():
    v = random_parts((1, 1), batch=(2, 3), dtype=torch.complex64)
    out = CGpower(v, 3, maxl=2)
    assert out[1].shape == (2, 3, 3, 2) and out[1].dtype == torch.complex64
    empty = CGpower(random_parts((1, 1), batch=(0,)), 2)
    assert empty[2].shape == (0, 5, 1)


def test_errors_say_what_was_expected():
    v = random_parts((1, 1))
    with pytest.raises(ValueError, match="k >= 1"):
        CGpower(v, 0)
    with pytest.raises(ValueError, match=r"part l=1 expects shape \(b..., 3, n\)"):
        CGpower({0: v[0], 1: v[1][..., :2, :]}, 2)
    with pytest.raises(ValueError, match="not all 0"):
        power_program((0, 0), (2,))
    with pytest.raises(TypeError, match="expects an SO3vec, a Variable holding one"):
        CGpower(torch.zeros(3), 2)


def test_so3vec_in_so3vec_out():
    v = SO3vec.randn(3, (1, 2, 1), dtype=torch.complex128)
    out = CGpower(v, 3, maxl=3)
    assert isinstance(out, SO3vec) and tuple(out.tau) == sym_power_multiplicities((1, 2, 1), 3, 3)
    from_dict = CGpower(dict(v.parts), 3, maxl=3)
    for L in range(4):
        torch.testing.assert_close(out.parts[L], from_dict[L], rtol=0, atol=0)
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    rotated = CGpower(v.rotate(R), 3, maxl=3)
    for L in range(4):
        torch.testing.assert_close(rotated.parts[L], out.rotate(R).parts[L], rtol=1e-10, atol=1e-10)


def test_engine_op_matches_torch_autograd_to_second_order():
    v = SO3vec.randn(2, (1, 1), dtype=torch.complex128)
    g = CGpower(v, 3)
    cotangent = SO3vec({l: torch.randn_like(p) for l, p in g.parts.items()})
    u = G.SO3vecVar(v)
    z = CGpower(u, 3)
    assert tuple(z.value.tau) == tuple(g.tau)
    (grad,) = G.grad([z], [u], [cotangent], create_graph=True)
    leaves = {l: p.clone().requires_grad_() for l, p in v.parts.items()}
    out = CGpower(leaves, 3)
    loss = sum((out[l] * cotangent.parts[l].conj()).real.sum() for l in out)
    torch_grad = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
    for l, tg in enumerate(torch_grad):
        torch.testing.assert_close(grad.value.parts[l], tg, rtol=1e-10, atol=1e-10)
    second = G.grad([G.norm2(grad).sum()], [u])[0]
    torch_second = torch.autograd.grad(sum((t.abs() ** 2).sum() for t in torch_grad), list(leaves.values()))
    for l, ts in enumerate(torch_second):
        torch.testing.assert_close(second.value.parts[l], ts, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k,maxl", [(1, 3), (2, None), (3, 0)])
def test_engine_op_equals_value_op(k, maxl):
    v = SO3vec.randn(2, (1, 1), dtype=torch.complex128)
    z, expected = CGpower(G.SO3vecVar(v), k, maxl).value, CGpower(v, k, maxl)
    assert z.tau == expected.tau
    for L in range(len(z.tau)):
        torch.testing.assert_close(z.parts[L], expected.parts[L], rtol=0, atol=0)


def test_neural_net_records_cgpower():
    class Cube(G.NeuralNet):
        def __init__(self):
            super().__init__()
            self.output = CGpower(G.Input(), 3, maxl=2)

    v = SO3vec.randn(2, (1, 1), dtype=torch.complex128)
    out = Cube()(v)
    for L in range(3):
        torch.testing.assert_close(out.parts[L], CGpower(v, 3, maxl=2).parts[L], rtol=0, atol=0)


# ----------------------------------------------------------------------------- weighted contraction
@pytest.mark.parametrize("lmax,K,maxl", [(2, 3, 2), (1, 4, 1), (1, 2, 2)])
def test_contraction_equals_weighted_sum_of_cgpowers(lmax, K, maxl):
    C, B = 3, 5
    x = SO3vec.randn(B, (C,) * (lmax + 1), dtype=torch.complex128)
    module = SymmetricContraction(C, lmax, K, maxl, num_elements=2, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 1])
    out = module(x, species)
    assert tuple(out.tau) == (C,) * (maxl + 1)
    for c in range(C):
        power_input = {l: p[..., c:c + 1] for l, p in x.parts.items()}
        expected = {L: 0 for L in range(maxl + 1)}
        for j, W in zip(module.program.degrees, module.weights):
            power = CGpower(power_input, j, maxl)
            w = W[species][:, :, c].to(torch.complex128)                       # (B, n_j)
            starts = np.cumsum([0] + list(module.program.out_type(j)))
            for L in range(maxl + 1):
                expected[L] = expected[L] + torch.einsum("bmn,bn->bm", power[L], w[:, starts[L]:starts[L + 1]])
        for L in range(maxl + 1):
            torch.testing.assert_close(out.parts[L][..., c], expected[L], rtol=1e-12, atol=1e-12)


def test_contraction_equivariant_and_onehot_equals_index():
    C, lmax, K, maxl = 4, 2, 3, 2
    x = SO3vec.randn(6, (C,) * (lmax + 1), dtype=torch.complex128)
    module = SymmetricContraction(C, lmax, K, maxl, num_elements=3, dtype=torch.float64)
    species = torch.tensor([2, 0, 1, 1, 0, 2])
    out = module(x, species)
    by_onehot = module(x, torch.nn.functional.one_hot(species, 3).double())
    R = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rotated, expected = module(x.rotate(R), species), out.rotate(R)
    for L in range(maxl + 1):
        torch.testing.assert_close(by_onehot.parts[L], out.parts[L], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rotated.parts[L], expected.parts[L], rtol=1e-10, atol=1e-10)


def test_contraction_homogeneous_per_degree():
    x = SO3vec.randn(3, (2, 2, 2), dtype=torch.complex128)
    module = SymmetricContraction(2, 2, 3, 2, dtype=torch.float64)
    for j in (1, 2, 3):
        with torch.no_grad():
            for i, w in enumerate(module.weights):
                w.mul_(float(i == j - 1))
        t = 0.6 + 0.3j
        scaled, out = module(x * t, torch.zeros(3, dtype=torch.long)), module(x, torch.zeros(3, dtype=torch.long))
        for L in range(3):
            torch.testing.assert_close(scaled.parts[L], t ** j * out.parts[L], rtol=1e-10, atol=1e-12)
        module = SymmetricContraction(2, 2, 3, 2, dtype=torch.float64)


def test_contraction_backward_matches_finite_differences():
    program = contraction_program(1, 3, 1)
    x = torch.randn(2, 2 * 4, dtype=torch.complex128, requires_grad=True)
    weights = [torch.randn(2, sum(program.out_type(j)), 2, dtype=torch.complex128, requires_grad=True)
               for j in program.degrees]
    torch.autograd.gradcheck(lambda x, *w: symmetric_contraction(x, list(w), program), [x, *weights])


def test_contraction_rejects_wrong_shapes():
    program = contraction_program(2, 3, 2)
    with pytest.raises(ValueError, match=r"\(B, C \* 9\)"):
        symmetric_contraction(torch.zeros(2, 13, dtype=torch.complex64), [], program)
    with pytest.raises(ValueError, match="weights of degree 1"):
        symmetric_contraction(torch.zeros(2, 27, dtype=torch.complex64), [torch.zeros(2, 1, 3)] * 3, program)
    with pytest.raises(ValueError, match="C channels per l"):
        symmetric_contraction(SO3vec.randn(2, (3, 2, 3)), [], program)
