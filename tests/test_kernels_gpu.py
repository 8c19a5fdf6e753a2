"""The Triton CG kernels compiled for a CUDA device: equal to the torch twin on the same device and
to the float64 reference, forward and backward (and second order for the weighted and message-
passing products), over full, weighted channel-wise, square, hand-made and message-passing plans,
batch 0, 1, odd and large, complex and real bases, single and double precision.

Run on a GPU machine with ``pytest -m gpu tests/test_kernels_gpu.py`` in a process of its own
(tests/test_kernels.py sets ``TRITON_INTERPRET=1`` for the process it runs in).
"""
import os

import pytest
import torch

from so3net.kernels import dispatch, torch_cg
from so3net.kernels.torch_cg import cg_product_reference
from so3net.plan import CGPlan, Path, cg_plan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                       reason="TRITON_INTERPRET=1 is set in this process: run this file on its own"),
]
TOL = {torch.float32: 1e-4, torch.complex64: 1e-4, torch.float64: 1e-10, torch.complex128: 1e-10}
DTYPES = [torch.complex64, torch.complex128, torch.float32, torch.float64]


def triton_ops():
    from so3net.kernels import triton_ops as ops
    return ops


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.numel() == 0:
        return
    b = b.to(a.device, a.dtype)
    scale = max(1.0, float(b.abs().max()))
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} x {scale:.3g}"


def basis(dtype):
    return "complex" if dtype.is_complex else "real"


def grads(fn, inputs, g):
    out = fn(*inputs)
    need = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return [out.detach(), *torch.autograd.grad(out, need, g, allow_unused=True, materialize_grads=True)]


def leaf(*shape, dtype, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, device="cuda", generator=gen).requires_grad_()


FULL = [((16, 16, 16), (16, 16, 16), 2), ((0, 0, 0, 0, 5), (0, 3), 4), ((3, 5, 7), (2, 0, 3), None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [0, 1, 37, 4099])
@pytest.mark.parametrize("tau1, tau2, maxl", FULL)
def test_full_product_matches_twin(tau1, tau2, maxl, batch, dtype):
    plan = cg_plan(tau1, tau2, maxl, "full", basis(dtype))
    x, y = leaf(batch, plan.dim1, dtype=dtype), leaf(batch, plan.dim2, dtype=dtype, seed=1)
    g = torch.randn(batch, plan.dim_out, dtype=dtype, device="cuda")
    got = grads(triton_ops().cg_product, (x, y, plan), g)
    for a, b in zip(got, grads(torch_cg.cg_product, (x, y, plan), g)):
        close(a, b, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.complex128, torch.float64])
def test_against_the_reference(dtype):
    plan = cg_plan((3, 5, 7), (2, 0, 3), None, "full", basis(dtype))
    x, y = leaf(5, plan.dim1, dtype=dtype), leaf(5, plan.dim2, dtype=dtype, seed=1)
    g = torch.randn(5, plan.dim_out, dtype=dtype, device="cuda")
    got = grads(triton_ops().cg_product, (x, y, plan), g)
    want = grads(cg_product_reference, (x.detach().cpu().requires_grad_(), y.detach().cpu().requires_grad_(), plan),
                 g.cpu())
    for a, b in zip(got, want):
        close(a, b, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_channelwise_to_second_order(dtype):
    plan = cg_plan((13, 13, 13), (1, 1, 1, 1), 3, "diag", basis(dtype))
    real = dtype.to_real() if dtype.is_complex else dtype
    x, y, w = leaf(517, plan.dim1, dtype=dtype), leaf(517, plan.dim2, dtype=dtype, seed=1), leaf(
        517, plan.num_weights, dtype=real, seed=2)
    g = torch.randn(517, plan.dim_out, dtype=dtype, device="cuda")
    results = []
    for ops in (triton_ops(), torch_cg):
        z = ops.weighted_product(x, y, plan, w)
        first = torch.autograd.grad(z, (x, y, w), g, create_graph=True)
        second = torch.autograd.grad(first, (x, y, w), [torch.ones_like(t) for t in first])
        results.append([z.detach(), *(t.detach() for t in first), *second])
    for a, b in zip(*results):
        close(a, b, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_message_passing_is_gather_product_index_add(dtype):
    plan = cg_plan((1, 1, 1, 1), (7, 7, 7), 3, "diag", basis(dtype))
    real = dtype.to_real() if dtype.is_complex else dtype
    nodes, edges = 301, 2003
    gen = torch.Generator(device="cuda").manual_seed(3)
    src = torch.randint(0, nodes, (edges,), device="cuda", generator=gen)
    dst = torch.randint(0, nodes - 5, (edges,), device="cuda", generator=gen)     # the last nodes get none
    e, n, w = leaf(edges, plan.dim1, dtype=dtype), leaf(nodes, plan.dim2, dtype=dtype, seed=1), leaf(
        edges, plan.num_weights, dtype=real, seed=2)
    g = torch.randn(nodes, plan.dim_out, dtype=dtype, device="cuda")

    def unfused(a, b, c):
        msgs = torch_cg.weighted_product(a, b[src], plan, c)
        return msgs.new_zeros(nodes, plan.dim_out).index_add(0, dst, msgs)
    got = grads(lambda a, b, c: triton_ops().message_passing_product(a, b, src, dst, plan, c), (e, n, w), g)
    for a, b in zip(got, grads(unfused, (e, n, w), g)):
        close(a, b, TOL[dtype])
    assert not got[0][nodes - 5:].any()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.float64])
def test_square_and_hand_made_plans(dtype):
    square = cg_plan((5, 3, 2), (5, 3, 2), 3, "square", basis(dtype))
    x = leaf(333, square.dim1, dtype=dtype)
    g = torch.randn(333, square.dim_out, dtype=dtype, device="cuda")
    for a, b in zip(grads(lambda u: triton_ops().cg_product(u, u, square), (x,), g),
                    grads(lambda u: torch_cg.cg_product(u, u, square), (x,), g)):
        close(a, b, TOL[dtype])
    paths = (Path(1, 1, 0, (2, 0, 1, 2), (1, 1, 0, 0), (1, 0, 1, 3)), Path(0, 1, 1, (0, 0), (2, 0), (1, 1)))
    plan = CGPlan("custom", (1, 3), (1, 3), (4, 2), 2, basis(dtype), paths)
    x, y = leaf(77, plan.dim1, dtype=dtype), leaf(77, plan.dim2, dtype=dtype, seed=1)
    g = torch.randn(77, plan.dim_out, dtype=dtype, device="cuda")
    for a, b in zip(grads(triton_ops().cg_product, (x, y, plan), g), grads(torch_cg.cg_product, (x, y, plan), g)):
        close(a, b, TOL[dtype])


def test_dispatch_sends_cuda_tensors_to_triton():
    x = torch.zeros(1, 1, device="cuda")
    assert dispatch.resolve(None, x) is triton_ops()
    assert dispatch.resolve("torch", x) is torch_cg.TORCH
    assert dispatch.backend(device="cuda") == "triton"
    with pytest.raises(RuntimeError, match="backend 'native' runs compiled CPU kernels"):
        dispatch.resolve("native", x)
