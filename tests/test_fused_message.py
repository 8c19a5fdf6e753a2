"""The compiled kernels of the Cormorant CG layer's neighbour sums, under the "native" backend,
against the torch ops of the "torch" backend, float64 and complex64: the fused message kernel
(so3net/kernels/native/padded_msg.c, ``neighbour_message_product`` of an ``EdgeFactors`` operand)
and the atom-pair scalars (pair_dots.c, ``message.pair_dots``): values, gradients of every operand,
second order, threads, odd shapes (empty slots, rows without neighbours, a missing part, lists of
some atoms), what they refuse, and the Cormorant model under both backends."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from so3net.kernels import backend, native
from so3net.kernels.message import (EdgeFactors, Neighbours, fused, higher_order, neighbour_message_product,
                                    pair_dots)
from so3net.models import Cormorant
from so3net.plan import cg_plan

C128 = torch.complex128


@pytest.fixture(autouse=True)
def compiled():
    """Every test here needs the compiled kernels, whatever SO3NET_CPU_KERNELS says."""
    try:
        native.library("native")
    except RuntimeError as err:
        pytest.skip(f"no compiled CPU kernels here: {err}")


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float((a - b).abs().max()) if a.numel() else 0.0
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    assert err <= tol * scale, f"max error {err:.3g} (scale {scale:.3g})"


def operands(C, L1, L2, maxl, n_src, n_dst, num_edges, seed, dtype=C128, present=None):
    g = torch.Generator().manual_seed(seed)
    tau2 = tuple(C if present is None or l in present else 0 for l in range(L2 + 1))
    plan = cg_plan((C,) * (L1 + 1), tau2, maxl, "diag")
    src = torch.randint(0, n_src, (num_edges,), generator=g)
    dst = torch.randint(0, n_dst, (num_edges,), generator=g)
    nbrs = Neighbours.from_edges(src, dst, n_dst, n_src)
    N, d = nbrs.src.shape
    scalars = (torch.randn(N, d, L1 + 1, C, dtype=dtype, generator=g) * nbrs.mask[..., None, None]).requires_grad_()
    harmonics = torch.randn(N, d, (L1 + 1) ** 2, dtype=dtype, generator=g).requires_grad_()
    node = torch.randn(n_src, plan.dim2, dtype=dtype, generator=g).requires_grad_()
    return plan, nbrs, scalars, harmonics, node


def both_paths(plan, nbrs, scalars, harmonics, node):
    """(values, gradients) under "native" (the fused kernel) and under "torch" (the outer strategy)."""
    out = []
    for name in ("native", "torch"):
        with backend(name):
            z = neighbour_message_product(EdgeFactors(scalars, harmonics), node, nbrs, plan)
        assert (type(z.grad_fn).__name__ == "_FusedMessageBackward") == (name == "native")
        g = torch.randn(z.shape, dtype=z.dtype, generator=torch.Generator().manual_seed(5))
        out.append((z.detach(), torch.autograd.grad(z, (scalars, harmonics, node), g)))
    return out


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(0, 3), st.integers(0, 3), st.integers(0, 4), st.integers(0, 14),
       st.integers(0, 2**31))
def test_fused_kernel_equals_the_outer_strategy_float64(C, L1, L2, maxl, num_edges, seed):
    plan, nbrs, s, y, x = operands(C, L1, L2, maxl, n_src=4, n_dst=6, num_edges=num_edges, seed=seed)
    (z, grads), (z_ref, grads_ref) = both_paths(plan, nbrs, s, y, x)
    close(z, z_ref, 1e-12)
    for got, want in zip(grads, grads_ref):
        close(got, want, 1e-12)


def test_fused_kernel_complex64_and_a_part_missing():
    plan, nbrs, s, y, x = operands(5, 3, 3, 3, n_src=9, n_dst=9, num_edges=40, seed=2,
                                   dtype=torch.complex64, present={0, 2, 3})
    (z, grads), (z_ref, grads_ref) = both_paths(plan, nbrs, s, y, x)
    close(z, z_ref, 2e-5)
    for got, want in zip(grads, grads_ref):
        close(got, want, 2e-5)


def test_empty_slots_and_lonely_rows_get_zero_gradients():
    plan, nbrs, s, y, x = operands(2, 2, 2, 2, n_src=5, n_dst=7, num_edges=9, seed=3)
    assert (~nbrs.mask).any() and (~nbrs.mask.any(1)).any()        # empty slots, and rows with none
    with backend("native"):
        z = neighbour_message_product(EdgeFactors(s, y), x, nbrs, plan)
    gs, gy, _ = torch.autograd.grad(z.abs().square().sum(), (s, y, x))
    assert float(z.detach()[~nbrs.mask.any(1)].abs().max()) == 0.0
    assert float(gs[~nbrs.mask].abs().max()) == 0.0 and float(gy[~nbrs.mask].abs().max()) == 0.0


def test_gradients_of_any_order():
    """First order by the kernel, checked against finite differences; second order (the graph of
    the gradient recorded) by the outer strategy's torch ops, also checked numerically."""
    plan, nbrs, s, y, x = operands(2, 2, 1, 2, n_src=4, n_dst=4, num_edges=7, seed=4)

    def loss(s, y, x):
        with backend("native"):
            return neighbour_message_product(EdgeFactors(s, y), x, nbrs, plan).abs().square().sum()
    assert torch.autograd.gradcheck(loss, (s, y, x))
    assert torch.autograd.gradgradcheck(loss, (s, y, x))


def test_second_order_takes_partial_derivatives_when_the_scalars_depend_on_the_nodes():
    """As Cormorant's edge scalars do (F_i · F_j): the gradient with respect to the node operand
    is a partial derivative on both paths, also when its graph is recorded."""
    plan, nbrs, s0, y, x = operands(2, 2, 2, 2, n_src=5, n_dst=5, num_edges=14, seed=9)
    results = []
    for name in ("native", "torch"):
        s = s0 * (1 + x.abs().square().sum())          # the scalars depend on the node features
        with backend(name):
            z = neighbour_message_product(EdgeFactors(s, y), x, nbrs, plan)
        grads = torch.autograd.grad(z.abs().square().sum(), (s0, y, x), create_graph=True)
        second = torch.autograd.grad(sum(g.abs().square().sum() for g in grads), (s0, y, x))
        results.append(grads + second)
    for got, want in zip(*results):
        close(got.detach(), want, 1e-11)


def test_threads_sum_the_node_gradients_alike():
    plan, nbrs, s, y, x = operands(3, 3, 3, 3, n_src=30, n_dst=30, num_edges=200, seed=6)
    results = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with backend("native"):
                z = neighbour_message_product(EdgeFactors(s, y), x, nbrs, plan)
            results.append((z, *torch.autograd.grad(z.real.sum(), (s, y, x))))
    finally:
        torch.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            close(a, b, 1e-13)


def test_only_the_gradients_asked_for():
    plan, nbrs, s, y, x = operands(2, 1, 1, 1, n_src=5, n_dst=5, num_edges=12, seed=7)
    y_fixed = y.detach()
    with backend("native"):
        z = neighbour_message_product(EdgeFactors(s, y_fixed), x.detach(), nbrs, plan)
    (gs,) = torch.autograd.grad(z.abs().sum(), (s,))
    with backend("torch"):
        z_ref = neighbour_message_product(EdgeFactors(s, y_fixed), x.detach(), nbrs, plan)
    close(gs, torch.autograd.grad(z_ref.abs().sum(), (s,))[0], 1e-12)


def test_what_takes_the_fused_kernel():
    plan, nbrs, s, y, x = operands(2, 1, 1, 1, n_src=5, n_dst=5, num_edges=12, seed=8)
    with backend("native"):
        assert fused(x) and not fused(x.real)
        # a formed edge operand, and real data, take the torch ops
        z = neighbour_message_product(EdgeFactors(s, y).materialize(), x, nbrs, plan)
        assert type(z.grad_fn).__name__ != "_FusedMessageBackward"
    with backend("torch"):
        assert not fused(x)
    with pytest.raises(ValueError, match="expects an edge operand"):
        neighbour_message_product(EdgeFactors(s[:, :, :1], y[:, :, :1]), x, nbrs, plan)
    with pytest.raises(ValueError, match="harmonics must have shape"):
        EdgeFactors(s, y[..., :2])


def test_cormorant_under_the_fused_kernel_equals_the_torch_ops():
    """Energies, forces and the weights' gradients of a force loss, float64: the compiled kernels
    against torch ops. ``energy_and_forces(create_graph=True)`` evaluates under ``higher_order``
    (torch ops); forces taken by hand with ``create_graph`` run the kernels forward and their
    recorded-graph backward; ``create_graph=False`` runs the kernels both ways."""
    model = Cormorant("md17", num_channels=3, maxl=2, max_sh=2, num_cg_levels=2, readout_hidden=(8,)).double()
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(14, 3, dtype=torch.float64, generator=g) * 1.3
    species = torch.tensor([1, 6, 8, 1, 1, 6, 7, 1, 6, 1, 8, 1, 1, 6])
    batch = torch.tensor([0] * 9 + [1] * 5)
    results = []
    for name in ("native", "torch"):
        with backend(name):
            out = []
            for by_hand in (False, True):
                model.zero_grad()
                if by_hand:
                    p = pos.detach().requires_grad_()
                    energies = model(p, species, batch)
                    forces = -torch.autograd.grad(energies.sum(), p, create_graph=True)[0]
                else:
                    energies, forces = model.energy_and_forces(pos, species, batch, create_graph=True)
                (energies.square().sum() + forces.square().sum()).backward()
                out += [energies, forces, *[q.grad.clone() for q in model.parameters() if q.grad is not None]]
            out += list(model.energy_and_forces(pos, species, batch, create_graph=False))
        results.append(out)
    for got, want in zip(*results):
        close(got.detach(), want.detach(), 1e-10)


def test_higher_order_evaluates_by_torch_ops():
    plan, nbrs, s, y, x = operands(2, 1, 1, 1, n_src=5, n_dst=5, num_edges=12, seed=12)
    with backend("native"):
        assert fused(x)
        with higher_order():
            assert not fused(x)
            z = neighbour_message_product(EdgeFactors(s, y), x, nbrs, plan)
            assert type(z.grad_fn).__name__ != "_FusedMessageBackward"
        assert fused(x)


PARTS = ((0, 1), (1, 5), (6, 7))          # parts l = 0, 2, 3 of a vector with l = 1 absent


@pytest.mark.parametrize("dtype,tol", [(C128, 1e-12), (torch.complex64, 2e-5)])
@pytest.mark.parametrize("which", ["all", "buckets", "grouped"])
def test_pair_dots_kernel_equals_the_torch_ops(dtype, tol, which):
    _, whole, _, _, x = operands(3, 1, 3, 2, n_src=9, n_dst=9, num_edges=30, seed=10, dtype=dtype, present={0, 2, 3})
    lists = {"all": [whole], "buckets": whole.buckets(3, min_saving=0.0, min_slots=1)}.get(which)
    if lists is None:
        order, lists = whole.grouped(3, min_saving=0.0, min_slots=1)
        x = x.detach()[order].requires_grad_()
    assert (which == "all") == (len(lists) == 1)
    for nbrs in lists:
        results = []
        for name in ("native", "torch"):
            with backend(name):
                p = pair_dots(x, 3, PARTS, nbrs)
            g = torch.randn(p.shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
            results.append((p.detach(), torch.autograd.grad(p, x, g)[0]))
        assert p.shape == (*nbrs.src.shape, 9)
        for got, want in zip(*results):
            close(got, want, tol)
        assert float(results[0][0][~nbrs.mask].abs().max()) == 0.0 if (~nbrs.mask).any() else True


def test_pair_dots_to_any_order_and_on_threads():
    _, nbrs, _, _, x = operands(3, 1, 3, 2, n_src=12, n_dst=12, num_edges=50, seed=11, present={0, 2, 3})

    def loss(x):
        with backend("native"):
            return pair_dots(x, 3, PARTS, nbrs).abs().square().sum()
    assert torch.autograd.gradcheck(loss, (x,))
    assert torch.autograd.gradgradcheck(loss, (x,))
    old = torch.get_num_threads()
    try:
        grads = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            grads.append(torch.autograd.grad(loss(x), x)[0])
    finally:
        torch.set_num_threads(old)
    for g in grads[1:]:
        close(g, grads[0], 1e-13)


def test_slot_tables_of_any_integer_type_and_layout_and_lazy_views():
    """int32 or transposed source tables and negated or conjugated views give what the torch ops
    give (the kernels read contiguous int64 slots and plain data)."""
    plan, nbrs, s, y, x = operands(2, 2, 2, 2, n_src=6, n_dst=6, num_edges=20, seed=13)
    odd = Neighbours(nbrs.src.t().contiguous().t().to(torch.int32), nbrs.mask)
    assert not odd.src.is_contiguous() or odd.src.dtype != torch.int64
    node = torch._neg_view(-x.detach()).conj().conj()          # a lazily negated view of x
    assert node.is_neg()
    results = []
    for name in ("native", "torch"):
        with backend(name):
            z = neighbour_message_product(EdgeFactors(s, y), node, odd, plan)
            p = pair_dots(node, 2, ((0, 1), (1, 3), (4, 5)), odd)
        results.append((z.detach(), p.detach(), *torch.autograd.grad(z.abs().sum() + p.abs().sum(), (s, y))))
    for got, want in zip(*results):
        close(got, want, 1e-12)


def test_pair_dots_refuses_rows_outside_the_nodes():
    x = torch.randn(4, 18, dtype=C128)
    rows_beyond = Neighbours.from_edges(torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 0, 1]), 6, 4)   # 6 rows, 4 nodes
    with backend("native"), pytest.raises(ValueError, match="rows' nodes must lie in"):
        pair_dots(x, 2, ((0, 1), (1, 3), (4, 5)), rows_beyond)
