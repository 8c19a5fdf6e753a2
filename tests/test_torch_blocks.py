"""The whole-plan GEMM evaluation of uniform full products (so3net.kernels.torch_blocks)."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from so3net.kernels import torch_blocks, torch_cg
from so3net.kernels.torch_blocks import CompiledExecutor, _layout, block_executor, pair_executors
from so3net.plan import cg_plan

CPU = torch.device("cpu")
DTYPES = {("complex", 64): torch.complex128, ("complex", 32): torch.complex64,
          ("real", 64): torch.float64, ("real", 32): torch.float32}


CACHES = (torch_blocks._block_executor, torch_blocks._pair_executors, torch_cg._path_executors)


@pytest.fixture(autouse=True, params=["native", "torch"])
def cpu_kernels(monkeypatch, request):
    """Both CPU paths (compiled kernels for real dtypes, GEMMs); correctness is tested on small
    types, which the redundancy limit would send path by path."""
    monkeypatch.setenv("SO3NET_CPU_KERNELS", request.param)
    monkeypatch.setattr(torch_blocks, "MAX_REDUNDANCY", float("inf"))
    for cached in CACHES:
        cached.cache_clear()
    yield request.param
    for cached in CACHES:
        cached.cache_clear()


def _plans(tau1, tau2, maxl, basis):
    plan = cg_plan(tau1, tau2, maxl, "full", basis)
    return plan, *plan.backward_plans


@given(n1=st.integers(1, 4), L1=st.integers(0, 3), n2=st.integers(1, 4), L2=st.integers(0, 3),
       maxl=st.one_of(st.none(), st.integers(0, 4)), basis=st.sampled_from(["complex", "real"]),
       batch=st.sampled_from([1, 2, 5]))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_uniform_full_product_and_gradients_equal_the_reference(cpu_kernels, n1, L1, n2, L2,
                                                                maxl, basis, batch):
    plan, px, py = _plans((n1,) * (L1 + 1), (n2,) * (L2 + 1), maxl, basis)
    dtype = DTYPES[basis, 64]
    compiled = cpu_kernels == "native"
    for p in (plan, px, py):
        executor = block_executor(p, CPU, dtype)
        assert executor is not None and isinstance(executor, CompiledExecutor) == compiled, p.name
    x = torch.randn(batch, plan.dim1, dtype=dtype, requires_grad=True)
    y = torch.randn(batch, plan.dim2, dtype=dtype, requires_grad=True)
    z, ref = torch_cg.cg_product(x, y, plan), torch_cg.cg_product_reference(x, y, plan)
    torch.testing.assert_close(z, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(z)
    got, want = torch.autograd.grad(z, (x, y), g), torch.autograd.grad(ref, (x, y), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("basis", ["complex", "real"])
def test_gradcheck_and_second_order(basis):
    plan = cg_plan((1, 1), (2, 2), 1, "full", basis)
    dtype = DTYPES[basis, 64]
    x = torch.randn(3, plan.dim1, dtype=dtype, requires_grad=True)
    y = torch.randn(3, plan.dim2, dtype=dtype, requires_grad=True)
    fn = lambda a, b: torch_cg.cg_product(a, b, plan)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, y))
    assert torch.autograd.gradgradcheck(fn, (x, y))


@pytest.mark.parametrize("basis,bits", [("complex", 32), ("real", 32)])
def test_single_precision_against_float64(basis, bits):
    plan = cg_plan((8, 8, 8), (8, 8, 8), 2, "full", basis)
    x64 = torch.randn(33, plan.dim1, dtype=DTYPES[basis, 64])
    y64 = torch.randn(33, plan.dim2, dtype=DTYPES[basis, 64])
    z = torch_cg.cg_product(x64.to(DTYPES[basis, bits]), y64.to(DTYPES[basis, bits]), plan)
    torch.testing.assert_close(z.to(x64.dtype), torch_cg.cg_product_reference(x64, y64, plan), rtol=1e-5, atol=1e-5)


def test_batch_zero_strided_and_expanded_operands():
    plan = cg_plan((2, 2), (2, 2), None, "full", "complex")
    assert torch_cg.cg_product(torch.zeros(0, plan.dim1, dtype=torch.complex128),
                               torch.zeros(0, plan.dim2, dtype=torch.complex128), plan).shape == (0, plan.dim_out)
    x = torch.randn(1, plan.dim1, dtype=torch.complex128).expand(4, -1)          # stride 0 over the batch
    y = torch.randn(plan.dim2, 4, dtype=torch.complex128).t()                    # transposed storage
    torch.testing.assert_close(torch_cg.cg_product(x, y, plan), torch_cg.cg_product_reference(x, y, plan))


def test_non_uniform_full_products_are_compiled_executors_only(cpu_kernels):
    executor = block_executor(cg_plan((2, 3), (2, 2), None, "full", "complex"), CPU, torch.float64)
    assert isinstance(executor, CompiledExecutor) if cpu_kernels == "native" else executor is None


@given(tau=st.lists(st.integers(0, 5), min_size=1, max_size=4), maxl=st.one_of(st.none(), st.integers(0, 4)),
       basis=st.sampled_from(["complex", "real"]))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_symmetric_square_and_its_gradient_equal_the_reference(cpu_kernels, tau, maxl, basis):
    plan = cg_plan(tuple(tau), tuple(tau), maxl, "square", basis)
    x = torch.randn(3, plan.dim1, dtype=DTYPES[basis, 64], requires_grad=True)
    z, ref = torch_cg.cg_product(x, x, plan), torch_cg.cg_product_reference(x, x, plan)
    torch.testing.assert_close(z, ref, rtol=1e-12, atol=1e-12)
    if z.numel():
        g = torch.randn_like(z)
        torch.testing.assert_close(torch.autograd.grad(z, x, g)[0], torch.autograd.grad(ref, x, g)[0],
                                   rtol=1e-11, atol=1e-11)


@given(tau1=st.lists(st.integers(0, 4), min_size=1, max_size=4),
       tau2=st.lists(st.integers(0, 4), min_size=1, max_size=4),
       maxl=st.one_of(st.none(), st.integers(0, 4)), basis=st.sampled_from(["complex", "real"]))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_full_product_and_gradients_equal_the_reference(cpu_kernels, tau1, tau2, maxl, basis):
    plan = cg_plan(tuple(tau1), tuple(tau2), maxl, "full", basis)
    dtype = DTYPES[basis, 64]
    x = torch.randn(3, plan.dim1, dtype=dtype, requires_grad=True)
    y = torch.randn(3, plan.dim2, dtype=dtype, requires_grad=True)
    z, ref = torch_cg.cg_product(x, y, plan), torch_cg.cg_product_reference(x, y, plan)
    torch.testing.assert_close(z, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(z)
    if z.numel():
        for a, b in zip(torch.autograd.grad(z, (x, y), g), torch.autograd.grad(ref, (x, y), g)):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_square_and_diag_plans_are_compiled_executors_only(cpu_kernels):
    square = cg_plan((2, 2), (2, 2), None, "square", "real")
    diag = cg_plan((2, 2), (2, 2), None, "diag", "complex")
    for plan in (square, *square.backward_plans, diag, *diag.backward_plans):
        executor = block_executor(plan, CPU, torch.float64)
        assert isinstance(executor, CompiledExecutor) if cpu_kernels == "native" else executor is None


@given(n=st.integers(2, 4), kinds=st.lists(st.tuples(st.sampled_from("n10"), st.sampled_from("n10")), min_size=1,
                                             max_size=4),
       maxl=st.one_of(st.none(), st.integers(0, 4)), basis=st.sampled_from(["complex", "real"]))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_channelwise_product_and_gradients_equal_the_reference(cpu_kernels, n, kinds, maxl, basis):
    """DiagCGproduct's plans: parts of n fragments, or one (broadcasting), or none, on either side."""
    count = {"n": n, "1": 1, "0": 0}
    plan = cg_plan(tuple(count[a] for a, _ in kinds), tuple(count[b] for _, b in kinds), maxl, "diag", basis)
    dtype = DTYPES[basis, 64]
    x = torch.randn(3, plan.dim1, dtype=dtype, requires_grad=True)
    y = torch.randn(3, plan.dim2, dtype=dtype, requires_grad=True)
    z, ref = torch_cg.cg_product(x, y, plan), torch_cg.cg_product_reference(x, y, plan)
    torch.testing.assert_close(z, ref, rtol=1e-12, atol=1e-12)
    if z.numel():
        g = torch.randn_like(z)
        for a, b in zip(torch.autograd.grad(z, (x, y), g), torch.autograd.grad(ref, (x, y), g)):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_second_order_plans(cpu_kernels):
    """The second-order plan with the forward's axes (d/d gz of d/dx) is a forward product: compiled;
    the others go path by path."""
    px, py = cg_plan((2, 3), (2, 2), None, "full", "complex").backward_plans
    second = (*px.backward_plans, *py.backward_plans)
    forward_like = [p for p in second if p.coef_perm == (0, 1, 2)]
    assert len(forward_like) == 1
    for plan in second:
        executor = block_executor(plan, CPU, torch.complex128)
        compiled = cpu_kernels == "native" and plan.coef_perm == (0, 1, 2)
        assert isinstance(executor, CompiledExecutor) if compiled else executor is None
    plan = forward_like[0]
    a = torch.randn(3, plan.dim1, dtype=torch.complex128)
    b = torch.randn(3, plan.dim2, dtype=torch.complex128)
    torch.testing.assert_close(torch_cg.cg_product(a, b, plan), torch_cg.cg_product_reference(a, b, plan))


def test_redundant_plans_go_path_by_path(monkeypatch, cpu_kernels):
    monkeypatch.setattr(torch_blocks, "MAX_REDUNDANCY", 24.0)
    torch_blocks._block_executor.cache_clear()
    dense = cg_plan((16, 16, 16), (16, 16, 16), 2, "full", "real")       # the benchmark: about 6x
    sparse = cg_plan((1,) * 7, (1,) * 7, 6, "full", "complex")             # l <= 6, one fragment: about 240x
    assert _layout(dense).redundancy < 24 < _layout(sparse).redundancy
    assert block_executor(dense, CPU, torch.float32) is not None
    compiled = block_executor(sparse, CPU, torch.complex128)              # sparse-exact: any redundancy
    assert (compiled is not None) == (cpu_kernels == "native")   # GEMMs: too redundant
    x, y = torch.randn(2, sparse.dim1, dtype=torch.complex128), torch.randn(2, sparse.dim2, dtype=torch.complex128)
    torch.testing.assert_close(torch_cg.cg_product(x, y, sparse), torch_cg.cg_product_reference(x, y, sparse))
