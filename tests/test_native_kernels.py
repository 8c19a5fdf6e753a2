"""Compiled CPU kernels of the uniform full product (so3net.kernels.native) and large outputs on
huge pages (so3net.kernels.memory)."""
import warnings

import pytest
import torch

from so3net.kernels import memory, native, torch_blocks, torch_cg
from so3net.kernels.torch_blocks import CompiledExecutor, block_executor
from so3net.plan import cg_plan

CPU = torch.device("cpu")
CACHES = (torch_blocks._block_executor, torch_blocks._pair_executors, torch_cg._path_executors)


@pytest.fixture
def fresh(monkeypatch):
    """Program caches and the loaded library forgotten before and after (a test changes the mode)."""
    monkeypatch.setattr(native.build, "_loaded", {})
    for cached in CACHES:
        cached.cache_clear()
    yield monkeypatch
    for cached in CACHES:
        cached.cache_clear()


def _check(plan, dtype, batch=5, threads=1, tol=None):
    lib = native.library()
    tables = native.tables(plan)
    wide = torch.complex128 if dtype.is_complex else torch.float64
    x64 = torch.randn(plan.dim1, batch, dtype=wide).t()                     # transposed storage
    y64 = torch.randn(batch, plan.dim2, dtype=wide)
    x, y = x64.to(dtype), y64.to(dtype)
    ref = torch_cg.cg_product_reference(x64.requires_grad_(), y64.requires_grad_(), plan)
    g64 = torch.randn_like(ref)
    want_x, want_y = torch.autograd.grad(ref, (x64, y64), g64)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        z = native.forward(lib, tables, x, y, torch.empty(batch, tables.dim_out, dtype=dtype))
        gx, gy = torch.empty(batch, plan.dim1, dtype=dtype), torch.empty(batch, plan.dim2, dtype=dtype)
        xc, yc = (x.conj(), y.conj()) if dtype.is_complex else (x, y)       # torch's complex gradients
        native.backward(lib, tables, g64.to(dtype), xc, yc, gx, gy)         # lazily conjugated inputs
        only_y = torch.full_like(gy, float("nan"))
        native.backward(lib, tables, g64.to(dtype), xc, None, None, only_y)
    finally:
        torch.set_num_threads(old)
    tol = tol or ({"rtol": 1e-12, "atol": 1e-12} if dtype in (torch.float64, torch.complex128)
                  else {"rtol": 1e-5, "atol": 1e-4})
    torch.testing.assert_close(z.to(wide), ref.detach(), **tol)
    torch.testing.assert_close(gx.to(wide), want_x, **tol)
    torch.testing.assert_close(gy.to(wide), want_y, **tol)
    torch.testing.assert_close(only_y, gy, rtol=0, atol=0)


@pytest.mark.parametrize("n2", [4, 8, 16, 32, 5, 12])         # unrolled variants and the generic one
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.complex128, torch.complex64])
def test_compiled_product_and_gradients_equal_the_reference(fresh, n2, dtype):
    """The kernels' bilinear forms (no conjugation) equal the product and torch autograd's
    gradients of the oracle, given the conjugated operands for complex data."""
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    _check(cg_plan((3, 3, 3), (n2,) * 3, 2, "full", "complex" if dtype.is_complex else "real"), dtype)


@pytest.mark.parametrize("tau1,tau2,maxl", [((2,) * 4, (16,) * 3, None), ((1,), (8,) * 5, 4), ((4,) * 5, (1,) * 5, 6),
                                             ((3, 1, 2), (16, 5, 0, 2), 3), ((2, 0, 3), (8, 8, 8), None)])
@pytest.mark.parametrize("basis", ["real", "complex"])
def test_compiled_kernels_on_other_shapes_and_two_threads(fresh, tau1, tau2, maxl, basis):
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    plan = cg_plan(tau1, tau2, maxl, "full", basis)
    _check(plan, torch.complex128 if basis == "complex" else torch.float64, batch=7, threads=2)
    uniform_y = len({n for n in tau2 if n}) == 1 and tau2[0] in (4, 8, 16, 32)
    assert native.tables(plan).variant(torch.float64) == (f"n{tau2[0]}" if uniform_y else "any16")
    assert native.tables(cg_plan((2, 1), (8, 16), None, "full", basis)).variant(torch.float32) == "any32"


@pytest.mark.parametrize("tau,maxl", [((16, 16, 16), 2), ((3, 5, 2), None), ((8, 0, 4), 3), ((2,), None)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_compiled_symmetric_square_triangles(fresh, tau, maxl, dtype):
    """The square's l1 = l2 blocks are triangles (fragment pairs i <= j, or i < j): the kernels'
    bilinear forms with independent operands equal the oracle's."""
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    plan = cg_plan(tau, tau, maxl, "square", "complex" if dtype.is_complex else "real")
    assert any(r[4] >= 0 for r in native.layout._rows(plan))
    _check(plan, dtype, batch=3, threads=2)


@pytest.mark.parametrize("tau1,tau2", [((3, 3, 3), (3, 3, 3)), ((1, 4, 4), (4, 1, 4)), ((6, 0, 6), (6, 1, 1))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_compiled_channelwise_product(fresh, tau1, tau2, dtype):
    """DiagCGproduct's plans (fragment i with fragment i; one-fragment parts broadcast) run
    zip_cg.c: its bilinear forms equal the oracle's."""
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    plan = cg_plan(tau1, tau2, None, "diag", "complex" if dtype.is_complex else "real")
    assert isinstance(native.tables(plan), native.ZipTables)
    _check(plan, dtype, batch=3, threads=2)


def test_mode_is_explicit(fresh):
    fresh.setenv("SO3NET_CPU_KERNELS", "fast")
    with pytest.raises(ValueError, match="SO3NET_CPU_KERNELS must be one of"):
        native.mode()
    fresh.setenv("SO3NET_CPU_KERNELS", "torch")
    assert native.library() is None and "SO3NET_CPU_KERNELS=torch" in native.status()
    plan = cg_plan((4, 4), (4, 4), None, "full", "real")
    assert not isinstance(block_executor(plan, CPU, torch.float32), CompiledExecutor)
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    assert isinstance(block_executor(plan, CPU, torch.float32), CompiledExecutor)
    assert isinstance(block_executor(plan, CPU, torch.complex64), CompiledExecutor)
    assert native.status().startswith("compiled (")


def test_missing_compiler_raises_in_native_mode_and_warns_in_auto_mode(fresh):
    fresh.setenv("CC", "/nonexistent/cc")
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    with pytest.raises(RuntimeError, match="no C compiler: '/nonexistent/cc'"):
        native.library()
    fresh.setattr(native.build, "_loaded", {})
    fresh.setenv("SO3NET_CPU_KERNELS", "auto")
    with pytest.warns(RuntimeWarning, match="compiled CPU kernels unavailable.*no C compiler"):
        assert native.library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # warned once, not per call
        plan = cg_plan((4, 4), (4, 4), None, "full", "real")
        x, y = torch.randn(3, plan.dim1, dtype=torch.float64), torch.randn(3, plan.dim2, dtype=torch.float64)
        torch.testing.assert_close(torch_cg.cg_product(x, y, plan), torch_cg.cg_product_reference(x, y, plan))
        assert not isinstance(block_executor(plan, CPU, torch.float64), CompiledExecutor)


def test_a_failing_compilation_reports_the_compiler_output(fresh, tmp_path):
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo fake 1.0; exit 0; fi\n"
                  "echo 'boom: bad flag' >&2\nexit 1\n")
    cc.chmod(0o755)
    fresh.setenv("CC", str(cc))
    fresh.setenv("SO3NET_CACHE_DIR", str(tmp_path / "cache"))
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    with pytest.raises(RuntimeError, match="(?s)compiling full_cg.c, zip_cg.c, padded_msg.c, pair_dots.c with .* failed.*boom: bad flag"):
        native.library()


def test_the_build_is_cached(fresh, tmp_path):
    fresh.setenv("SO3NET_CACHE_DIR", str(tmp_path))
    first = native.build._build()
    stamp = first.stat().st_mtime_ns
    assert native.build._build() == first and first.stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "native"


def test_large_outputs_are_advised_huge_pages():
    small = memory.empty(3, 5, dtype=torch.float32, device=CPU)
    assert small.shape == (3, 5) and small.dtype == torch.float32
    big = memory.empty(2, memory.HUGE_PAGE_MIN_BYTES // 4, dtype=torch.float32, device=CPU)
    big.fill_(1.5)
    assert big.shape == (2, memory.HUGE_PAGE_MIN_BYTES // 4) and bool((big == 1.5).all())
    if not memory.huge_pages_available():
        pytest.skip("transparent huge pages are off on this machine: the advice cannot be observed")
    assert "hg" in _vm_flags(big.data_ptr() + 4096), "the output's mapping lacks the huge-page advice (VmFlags hg)"


def _vm_flags(address: int) -> list[str]:
    """The VmFlags of the mapping of this process that holds ``address`` (/proc/self/smaps)."""
    with open("/proc/self/smaps") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        head = line.split(" ", 1)[0]
        if "-" not in head or not all(c in "0123456789abcdef-" for c in head):
            continue
        lo, hi = (int(v, 16) for v in head.split("-"))
        if lo <= address < hi:
            for rest in lines[i + 1:]:
                if rest.startswith("VmFlags:"):
                    return rest.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


def test_the_kernels_check_their_arguments(fresh):
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    lib, plan = native.library(), cg_plan((2, 2), (3, 3), None, "full", "real")
    tables = native.tables(plan)
    x, y = torch.randn(4, plan.dim1, dtype=torch.float64), torch.randn(4, plan.dim2, dtype=torch.float64)
    out = torch.empty(4, tables.dim_out, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"out: expected a CPU tensor of shape \(4, \d+\) and dtype torch.float64"):
        native.forward(lib, tables, x, y, out.float())
    with pytest.raises(ValueError, match="y: expected"):
        native.forward(lib, tables, x, y[:3], out)
    with pytest.raises(ValueError, match="the output must be contiguous"):
        native.forward(lib, tables, x, y, torch.empty(tables.dim_out, 4, dtype=torch.float64).t())
    with pytest.raises(TypeError, match="take float32, float64, complex64 or complex128"):
        native.forward(lib, tables, x.half(), y.half(), out.half())
    with pytest.raises(ValueError, match=r"y \(for gx\) is required"):
        native.backward(lib, tables, out, x, None, torch.empty_like(x), None)
    with pytest.raises(ValueError, match="needs gx, gy or both"):
        native.backward(lib, tables, out, x, y, None, None)


def test_lazily_negated_operands(fresh):
    fresh.setenv("SO3NET_CPU_KERNELS", "native")
    plan = cg_plan((2, 2), (3, 3), None, "full", "complex")
    x = torch._neg_view(torch.randn(2, plan.dim1, dtype=torch.complex128))     # contiguous, negative bit set
    y = torch.randn(2, plan.dim2, dtype=torch.complex128)
    assert x.is_neg() and x.is_contiguous()
    torch.testing.assert_close(torch_cg.cg_product(x, y, plan), torch_cg.cg_product_reference(x, y, plan))


def test_compiler_command_with_arguments_and_empty_cache_setting(fresh, tmp_path):
    fresh.setenv("CC", "env cc")                                            # a wrapper, like "ccache gcc"
    fresh.setenv("SO3NET_CACHE_DIR", "")
    assert native.build._compiler()[1:] == ["cc"] and native.build._cache_dir().is_absolute()
    fresh.setenv("SO3NET_CACHE_DIR", str(tmp_path))
    assert native.build._build().exists()
