"""CG product kernels: the torch twin against the float64 reference, the Triton kernels (run by the
Triton interpreter on the CPU) against both, forward and backward, over generated types (l <= 4,
odd and prime fragment counts, batch 0, 1 and 37, both bases, single and double precision);
gradcheck of the twin; the fused message-passing product against gather -> product -> index_add;
dispatch and argument checks. GPU runs: tests/test_kernels_gpu.py."""
import os

os.environ["TRITON_INTERPRET"] = "1"   # before triton is first imported: the kernels are interpreted

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

from so3net.kernels import dispatch, torch_cg, triton_ops  # noqa: E402
from so3net.kernels.torch_cg import cg_product_reference  # noqa: E402
from so3net.plan import CGPlan, Path, cg_plan  # noqa: E402

COUNTS = [1, 2, 3, 5, 7]
TOL = {torch.float32: 3e-5, torch.complex64: 3e-5, torch.float64: 1e-11, torch.complex128: 1e-11}
DTYPES = {("complex", 32): torch.complex64, ("complex", 64): torch.complex128,
          ("real", 32): torch.float32, ("real", 64): torch.float64}


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.numel() == 0:
        return
    b = b.to(a.dtype)
    scale = max(1.0, float(b.detach().abs().max()))
    err = float((a - b).detach().abs().max())
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} x {scale:.3g}"


@st.composite
def cases(draw, kinds=("full", "diag", "square"), max_terms=None, max_parts=4):
    """(plan, dtype, batch): types with up to ``max_parts`` nonzero parts of degree l <= 4 (odd and
    prime counts), every kind, both bases, single and double precision, batch 0, 1 or 37."""
    kind = draw(st.sampled_from(kinds))
    ls = st.lists(st.integers(0, 4), min_size=1, max_size=max_parts, unique=True)
    if kind == "diag":
        n = draw(st.sampled_from(COUNTS))
        tau1 = tuple(n if l in draw(ls) else 0 for l in range(5))
        tau1 = tau1 if any(tau1) else (n,)
        tau2 = tau1
    else:
        l1, l2 = draw(ls), draw(ls)
        tau1 = tuple(draw(st.sampled_from(COUNTS)) if l in l1 else 0 for l in range(max(l1) + 1))
        tau2 = tau1 if kind == "square" else tuple(
            draw(st.sampled_from(COUNTS)) if l in l2 else 0 for l in range(max(l2) + 1))
    plan = cg_plan(tau1, tau2, draw(st.none() | st.integers(0, 4)), kind, draw(st.sampled_from(["complex", "real"])))
    if max_terms is not None:
        from hypothesis import assume
        assume(sum(len(t[3]) for t in plan.path_terms) <= max_terms and plan.paths)
    dtype = DTYPES[plan.basis, draw(st.sampled_from([32, 64]))]
    return plan, dtype, draw(st.sampled_from([0, 1, 37]))


def operands(plan, dtype, batch, seed=0, weights=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, plan.dim1, dtype=dtype, generator=gen).requires_grad_()
    y = x if plan.kind == "square" else torch.randn(batch, plan.dim2, dtype=dtype, generator=gen).requires_grad_()
    real = x.real.dtype if x.is_complex() else x.dtype
    w = torch.randn(batch, plan.num_weights, dtype=real, generator=gen).requires_grad_() if weights else None
    g = torch.randn(batch, plan.dim_out, dtype=dtype, generator=gen)
    return x, y, w, g


def values_and_grads(fn, plan, x, y, w, g):
    """``fn``'s output and the gradients of <g, output> for every input that requires grad."""
    z = fn(x, y, plan) if w is None else fn(x, y, plan, w)
    inputs = [t for t in dict.fromkeys((x, y, w)) if t is not None]
    return (z.detach(), *torch.autograd.grad(z, inputs, g, allow_unused=True)) if z.numel() else (z.detach(),)


def assert_same(got, want, dtype):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        close(a, b, TOL[dtype])


# ------------------------------------------------------------------------------------ twin
@settings(max_examples=12, deadline=None)
@given(cases(max_parts=2))
def test_twin_matches_reference(case):
    plan, dtype, batch = case
    x, y, _, g = operands(plan, dtype, batch)
    assert_same(values_and_grads(torch_cg.cg_product, plan, x, y, None, g),
                values_and_grads(cg_product_reference, plan, x, y, None, g), dtype)


@settings(max_examples=6, deadline=None)
@given(cases(kinds=("diag",), max_parts=2))
def test_twin_weighted_matches_reference(case):
    plan, dtype, batch = case
    x, y, w, g = operands(plan, dtype, batch, weights=True)
    assert_same(values_and_grads(torch_cg.weighted_product, plan, x, y, w, g),
                values_and_grads(cg_product_reference, plan, x, y, w, g), dtype)


@pytest.mark.parametrize("dtype", [torch.complex128, torch.float64])
def test_twin_gradcheck_to_second_order(dtype):
    basis = "complex" if dtype.is_complex else "real"
    full, diag = cg_plan((1, 1), (1, 1), 1, "full", basis), cg_plan((2, 2), (1, 1), 1, "diag", basis)
    x, y, _, _ = operands(full, dtype, 1)
    a, b, w, _ = operands(diag, dtype, 1, weights=True)
    src, dst = torch.tensor([0, 0]), torch.tensor([0, 0])
    e = torch.randn(2, diag.dim1, dtype=dtype).requires_grad_()
    we = torch.randn(2, diag.num_weights, dtype=w.dtype).requires_grad_()
    checks = [(lambda u, v: torch_cg.cg_product(u, v, full), (x, y)),
              (lambda u, v, c: torch_cg.weighted_product(u, v, diag, c), (a, b, w)),
              (lambda u, v, c: torch_cg.message_passing_product(u, v, src, dst, diag, c), (e, b, we))]
    for fn, inputs in checks:
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


# ------------------------------------------------------------------------------------ triton
def test_triton_runs_interpreted():
    assert triton_ops.INTERPRETED, "TRITON_INTERPRET=1 must be set before triton is imported"


@pytest.mark.interpret
@settings(max_examples=8, deadline=None)
@given(cases(max_terms=40, max_parts=2))
def test_triton_matches_twin_and_reference(case):
    plan, dtype, batch = case
    x, y, _, g = operands(plan, dtype, batch, seed=1)
    got = values_and_grads(triton_ops.cg_product, plan, x, y, None, g)
    assert_same(got, values_and_grads(torch_cg.cg_product, plan, x, y, None, g), dtype)
    assert_same(got, values_and_grads(cg_product_reference, plan, x, y, None, g), dtype)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.complex64, torch.float64])
def test_triton_l4_product(dtype):
    """The (4, 1) -> 3, 4 blocks, prime counts, batch 37."""
    plan = cg_plan((0, 0, 0, 0, 5), (0, 3), 4, "full", "complex" if dtype.is_complex else "real")
    x, y, _, g = operands(plan, dtype, 37, seed=2)
    assert_same(values_and_grads(triton_ops.cg_product, plan, x, y, None, g),
                values_and_grads(cg_product_reference, plan, x, y, None, g), dtype)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype, order", [(torch.complex128, 2), (torch.float32, 1)])
def test_triton_weighted_product(dtype, order):
    """The "uvu" product: 7 channels x (l=0,1) with spherical harmonics (one fragment, l <= 1),
    gradients of x, y and the weights (and their gradients, for order 2)."""
    plan = cg_plan((7, 7), (1, 1), 1, "diag", "complex" if dtype.is_complex else "real")
    x, y, w, g = operands(plan, dtype, 3, seed=3, weights=True)
    results = []
    for impl in (triton_ops, torch_cg):
        z = impl.weighted_product(x, y, plan, w)
        first = torch.autograd.grad(z, (x, y, w), g, create_graph=order > 1)
        second = torch.autograd.grad(first, (x, y, w), [torch.ones_like(t) for t in first]) if order > 1 else ()
        results.append([z.detach(), *(t.detach() for t in first), *second])
    assert_same(results[0], results[1], dtype)


def _gather_product_index_add(edge, node, src, dst, plan, weights, num_nodes):
    msgs = cg_product_reference(edge, node[src], plan, weights).to(edge.dtype)
    return msgs.new_zeros(num_nodes, plan.dim_out).index_add(0, dst, msgs)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype, num_edges", [(torch.complex128, 9), (torch.float32, 9), (torch.complex64, 0)])
def test_triton_message_passing_is_gather_product_index_add(dtype, num_edges):
    plan = cg_plan((3, 3), (3, 3), 1, "diag", "complex" if dtype.is_complex else "real")
    gen = torch.Generator().manual_seed(4)
    N = 5                                            # node 4 receives no edge
    src, dst = torch.randint(0, N, (num_edges,), generator=gen), torch.randint(0, N - 1, (num_edges,), generator=gen)
    edge = torch.randn(num_edges, plan.dim1, dtype=dtype, generator=gen).requires_grad_()
    node = torch.randn(N, plan.dim2, dtype=dtype, generator=gen).requires_grad_()
    w = torch.randn(num_edges, plan.num_weights, dtype=edge.real.dtype, generator=gen).requires_grad_()
    g = torch.randn(N, plan.dim_out, dtype=dtype, generator=gen)
    results = []
    for fn in (triton_ops.message_passing_product, torch_cg.message_passing_product, _gather_product_index_add):
        out = fn(edge, node, src, dst, plan, w, N)
        results.append([out.detach(), *torch.autograd.grad(out, (edge, node, w), g, allow_unused=True,
                                                            materialize_grads=True)])
    assert_same(results[0], results[2], dtype)
    assert_same(results[1], results[2], dtype)
    assert not results[0][0][4].any()


@pytest.mark.interpret
def test_triton_arbitrary_paths_and_uncovered_outputs():
    """A hand-made plan: repeated output fragments (summed), broadcast and permuted fragments, an
    output part no path writes; and a backward plan whose x part gets no gradient."""
    paths = (Path(1, 1, 0, (2, 0, 1, 2), (1, 1, 0, 0), (1, 0, 1, 3)),
             Path(0, 1, 1, (0, 0), (2, 0), (1, 1)),
             Path(1, 0, 1, (1,), (0,), (0,)))
    plan = CGPlan("custom", (1, 3), (1, 3), (4, 3), 2, "complex", paths)
    assert not plan.covers_output
    x, y, w, g = operands(plan, torch.complex128, 6, seed=5, weights=True)
    got = values_and_grads(triton_ops.weighted_product, plan, x, y, w, g)
    assert_same(got, values_and_grads(cg_product_reference, plan, x, y, w, g), torch.complex128)
    assert_same(got, values_and_grads(torch_cg.weighted_product, plan, x, y, w, g), torch.complex128)
    stub = cg_plan((1, 0, 0, 1), (2,), 1)
    x, y, _, g = operands(stub, torch.float64, 3, seed=6)
    gx = values_and_grads(triton_ops.cg_product, stub, x, y, None, g)[1]
    assert not gx[:, 1:].any() and gx[:, :1].any()


# ------------------------------------------------------------------------------------ dispatch
def test_dispatch_precedence(monkeypatch):
    monkeypatch.delenv("SO3NET_CPU_KERNELS", raising=False)
    x = torch.zeros(1, 1)
    assert dispatch.resolve(None, x) is torch_cg.NATIVE and dispatch.backend() == "native"
    try:
        dispatch.set_backend("triton")
        assert dispatch.resolve(None, x) is triton_ops and dispatch.backend() == "triton"
        with dispatch.backend("torch"):
            assert dispatch.resolve(None, x) is torch_cg.TORCH and dispatch.backend() == "torch"
            assert dispatch.resolve("triton", x) is triton_ops
            assert dispatch.resolve("native", x) is torch_cg.NATIVE
        assert dispatch.get_backend() == "triton"
    finally:
        dispatch.set_backend(None)
    assert dispatch.get_backend() is None
    assert dispatch.backend(device="cuda") == "triton"


def test_backend_called_as_a_statement_warns():
    with pytest.warns(RuntimeWarning, match="outside a with statement does nothing"):
        dispatch.backend("torch")
    assert dispatch.get_backend() is None


def test_environment_overrides_only_the_automatic_cpu_choice(monkeypatch):
    x = torch.zeros(1, 1)
    monkeypatch.setenv("SO3NET_CPU_KERNELS", "torch")
    assert dispatch.backend() == "torch" and dispatch.resolve(None, x) is torch_cg.TORCH
    with dispatch.backend("native"):                       # an explicit choice wins over the variable
        assert dispatch.resolve(None, x) is torch_cg.NATIVE
    monkeypatch.setenv("SO3NET_CPU_KERNELS", "native")
    assert dispatch.backend() == "native"
    with pytest.raises(RuntimeError, match="backend 'native' runs compiled CPU kernels"):
        dispatch.resolve("native", torch.zeros(1, device="meta"))


def test_dispatch_runs_the_chosen_backend():
    plan = cg_plan((1, 1), (1,), 1)
    x, y, _, _ = operands(plan, torch.complex128, 2)
    want = cg_product_reference(x, y, plan)
    for name in ("torch", "native", "triton"):
        close(dispatch.cg_product(x, y, plan, backend=name), want, 1e-12)


def test_native_and_torch_backends_run_different_code(monkeypatch):
    """The named backends are real choices: only 'native' calls the compiled kernels."""
    from so3net.kernels import native
    calls = []
    real_forward = native.forward
    monkeypatch.setattr(native, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    plan = cg_plan((2, 2), (2, 2), 1)
    x, y, _, _ = operands(plan, torch.float64 if plan.basis == "real" else torch.complex128, 5)
    want = cg_product_reference(x, y, plan)
    close(dispatch.cg_product(x, y, plan, backend="torch"), want, 1e-12)
    assert not calls
    close(dispatch.cg_product(x, y, plan, backend="native"), want, 1e-12)
    assert calls


def test_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        dispatch.resolve("triton", torch.zeros(1))
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch.resolve("cuda", torch.zeros(1))


@pytest.mark.parametrize("call, message", [
    (lambda p, x, y: torch_cg.cg_product(x[:, :-1], y, p), r"x must be packed with shape \(2, 4\)"),
    (lambda p, x, y: torch_cg.cg_product(x, y[:1], p), r"y must be packed with shape \(2, 3\)"),
    (lambda p, x, y: torch_cg.cg_product(x, y.to(torch.complex64), p), "one dtype"),
    (lambda p, x, y: torch_cg.cg_product(x.real.half(), y.real.half(), p), "CG kernels support dtypes"),
    (lambda p, x, y: torch_cg.weighted_product(x, y, p, torch.zeros(2, 3)), r"weights must have shape \(2, 6\)"),
    (lambda p, x, y: torch_cg.weighted_product(x, y, p, torch.zeros(2, 6, dtype=torch.complex128)), "real"),
    (lambda p, x, y: torch_cg.message_passing_product(x, y, torch.tensor([0, 2]), torch.tensor([0, 1]), p),
     r"src indices must lie in \[0, 2\)"),
])
def test_argument_errors(call, message):
    plan = cg_plan((1, 1), (3,), 1)
    x, y = torch.zeros(2, plan.dim1, dtype=torch.complex128), torch.zeros(2, plan.dim2, dtype=torch.complex128)
    with pytest.raises(ValueError, match=message):
        call(plan, x, y)


def test_twin_full_backward_uses_contractions():
    """The backward plans of a full product evaluate as batched contractions, not entry gathers."""
    from so3net.kernels.torch_paths import path_structure
    px, py = cg_plan((3, 2), (2, 5), 2).backward_plans
    kinds = {path_structure(q, i)[:3] for q in (px, py) for i in range(len(q.paths))}
    assert kinds == {("contract", "left", "rows"), ("contract", "left", "cols")}
    assert np.all([path_structure(cg_plan((3, 2), (2, 5), 2), i) == ("outer",) for i in range(5)])
