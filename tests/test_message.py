"""The outer strategy of the channel-wise products (so3net.kernels.message) against the kernels'
torch twin (per row, per edge), in float64, complex and real bases: values, first and second
derivatives, the edge-list entry point, odd shapes (no edges, isolated nodes, more destinations
than sources, a single channel), and the plans and data it refuses."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from so3net.kernels import dispatch, message, torch_cg
from so3net.kernels.dispatch import cg_product
from so3net.kernels.message import (Neighbours, OuterContraction, channelwise_product, channelwise_square_plan,
                                    covers, message_passing_product, padded_message_product)
from so3net.plan import cg_plan

FAST = settings(max_examples=12, deadline=None)
C128 = torch.complex128


def close(a, b, tol=1e-12):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0
    scale = max(1.0, float(b.detach().abs().max())) if b.numel() else 1.0
    assert err <= tol * scale, f"max error {err:.3g}"


def uniform(C, L, present=None):
    return tuple(C if present is None or l in present else 0 for l in range(L + 1))


@FAST
@given(st.integers(1, 4), st.integers(0, 3), st.integers(0, 3), st.integers(0, 4), st.integers(0, 9),
       st.sampled_from(["complex", "real"]), st.integers(0, 2**31))
def test_edge_list_product_equals_the_twin(C, L1, L2, maxl, num_edges, basis, seed):
    g = torch.Generator().manual_seed(seed)
    dtype = C128 if basis == "complex" else torch.float64
    plan = cg_plan(uniform(C, L1), uniform(C, L2, present={0, L2}), maxl, "diag", basis)
    n_src, n_dst = 4, 6                              # more destinations than sources; some isolated
    src = torch.randint(0, n_src, (num_edges,), generator=g)
    dst = torch.randint(0, n_dst, (num_edges,), generator=g)
    edge = torch.randn(num_edges, plan.dim1, dtype=dtype, generator=g)
    node = torch.randn(n_src, plan.dim2, dtype=dtype, generator=g)
    got = message_passing_product(edge, node, src, dst, plan, n_dst)
    close(got, torch_cg.TORCH.message_passing_product(edge, node, src, dst, plan, None, n_dst))   # per edge


@FAST
@given(st.integers(1, 3), st.integers(0, 3), st.integers(0, 4), st.sampled_from(["complex", "real"]),
       st.integers(0, 2**31))
def test_row_wise_products_equal_the_twin(C, L, maxl, basis, seed):
    g = torch.Generator().manual_seed(seed)
    tau = uniform(C, L)
    dtype = C128 if basis == "complex" else torch.float64
    x = torch.randn(5, sum((2 * l + 1) * n for l, n in enumerate(tau)), dtype=dtype, generator=g)
    y = torch.randn_like(x)
    for plan in (cg_plan(tau, tau, maxl, "diag", basis), channelwise_square_plan(tau, maxl, basis)):
        close(channelwise_product(x, y, plan), cg_product(x, y, plan, backend="torch"))


@pytest.mark.parametrize("basis,dtype", [("complex", C128), ("real", torch.float64)])
def test_gradients_to_second_order(basis, dtype):
    g = torch.Generator().manual_seed(1)
    plan = cg_plan((2, 2, 2), (2, 2), 2, "diag", basis)
    src, dst = torch.tensor([0, 1, 2, 2, 0, 1]), torch.tensor([1, 0, 0, 1, 3, 3])
    edge = torch.randn(6, plan.dim1, dtype=dtype, generator=g, requires_grad=True)
    node = torch.randn(3, plan.dim2, dtype=dtype, generator=g, requires_grad=True)
    f = lambda e, x: message_passing_product(e, x, src, dst, plan, 4)  # noqa: E731
    assert torch.autograd.gradcheck(f, (edge, node))
    assert torch.autograd.gradgradcheck(f, (edge, node))
    sq = channelwise_square_plan((2, 2), 2, basis)
    x = torch.randn(3, sq.dim1, dtype=dtype, generator=g, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: channelwise_product(x, x, sq), (x,))


def test_padded_layout_accepts_any_strides():
    g = torch.Generator().manual_seed(2)
    plan = cg_plan((3, 3), (3, 3), 1, "diag")
    nbrs = Neighbours.from_edges(torch.tensor([1, 2, 0]), torch.tensor([0, 0, 2]), 3)
    d = nbrs.src.shape[1]
    edge = torch.randn(3, 3, 4, d, dtype=C128, generator=g).permute(1, 3, 2, 0)   # memory (C, N, D1, d)
    assert edge.shape == (3, d, 4, 3) and not edge.is_contiguous()
    node = torch.randn(3, plan.dim2, dtype=C128, generator=g)
    sources = nbrs.sources(node, 3)
    close(padded_message_product(edge, sources, plan), padded_message_product(edge.contiguous(), sources, plan))


def test_refuses_what_it_cannot_evaluate():
    assert covers(cg_plan((2, 0, 2), (2, 2), 3, "diag")) and covers(channelwise_square_plan((3, 3), 2))
    assert not covers(cg_plan((2, 2), (1, 1), 2, "diag")) and not covers(cg_plan((2, 2), (2, 2), 2, "full"))
    assert not covers(cg_plan((2, 2), (2, 2), 2, "diag").backward_plans[0])
    with pytest.raises(ValueError, match="same fragment count"):
        OuterContraction(cg_plan((2, 2), (1, 1), 2, "diag"))
    with pytest.raises(ValueError, match="channel-wise"):
        OuterContraction(cg_plan((2, 2), (2, 2), 2, "full"))
    with pytest.raises(TypeError, match="complex-basis plan needs complex"):
        channelwise_product(torch.randn(2, 8), torch.randn(2, 8), cg_plan((2, 2), (2, 2), 2, "diag"))


@pytest.mark.parametrize("name", ["native", "torch"])
def test_dispatch_routes_unweighted_uniform_channel_wise_plans_to_the_outer_strategy(monkeypatch, name):
    calls = []
    real = message.message_passing_product
    monkeypatch.setattr(message, "message_passing_product", lambda *a: calls.append(1) or real(*a))
    plan = cg_plan((2, 2), (2, 2), 1, "diag", "complex")
    src, dst = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2])
    edge, node = torch.randn(3, plan.dim1, dtype=C128), torch.randn(3, plan.dim2, dtype=C128)
    want = torch_cg.TORCH.message_passing_product(edge, node, src, dst, plan, None, 3)
    close(dispatch.message_passing_product(edge, node, src, dst, plan, backend=name), want)
    assert calls == [1]
    weights = torch.randn(3, plan.num_weights, dtype=torch.float64)
    dispatch.message_passing_product(edge, node, src, dst, plan, weights, backend=name)   # weighted: per edge
    full = cg_plan((2, 2), (2, 2), 1, "full", "complex")
    dispatch.message_passing_product(torch.randn(3, full.dim1, dtype=C128), torch.randn(3, full.dim2, dtype=C128),
                                     src, dst, full, backend=name)                      # not channel-wise
    assert calls == [1]


@settings(max_examples=25, deadline=None)
@given(num_nodes=st.integers(1, 40), num_edges=st.integers(0, 200), max_buckets=st.integers(1, 4),
       seed=st.integers(0, 10_000))
def test_buckets_hold_every_edge_once_in_fewer_slots(num_nodes, num_edges, max_buckets, seed):
    """Neighbours.buckets: the same (src, dst) edges, each once and in slot order, every row's node
    at most once, atoms without neighbours in no bucket, never more padded slots than one list."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (num_edges,), generator=g)
    dst = torch.randint(0, num_nodes, (num_edges,), generator=g)
    nbrs = Neighbours.from_edges(src, dst, num_nodes)
    lists = nbrs.buckets(max_buckets)
    assert 1 <= len(lists) <= max_buckets
    assert sum(b.src.numel() for b in lists) <= nbrs.src.numel()

    def edges(b):
        rows, slots = b.mask.nonzero(as_tuple=True)
        return [(int(b.rows()[r]), int(s), int(b.src[r, s])) for r, s in zip(rows, slots)]
    assert sorted(e for b in lists for e in edges(b)) == sorted(edges(nbrs))
    rows = torch.cat([b.rows() for b in lists])
    assert len(set(rows.tolist())) == len(rows)
    if lists[0] is not nbrs:
        assert set(rows.tolist()) == set(dst.tolist())


@settings(max_examples=25, deadline=None)
@given(num_nodes=st.integers(1, 40), num_edges=st.integers(0, 200), seed=st.integers(0, 10_000))
def test_grouped_buckets_renumber_nodes_into_consecutive_rows(num_nodes, num_edges, seed):
    """Neighbours.grouped: ``order`` is a permutation of the nodes; bucket k holds the consecutive
    new nodes start_k .. start_k + n_k - 1 (Neighbours.consecutive); mapped back through ``order``
    the edges are those of the list, each once; nodes without neighbours come last."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (num_edges,), generator=g)
    dst = torch.randint(0, num_nodes, (num_edges,), generator=g)
    nbrs = Neighbours.from_edges(src, dst, num_nodes)
    order, lists = nbrs.grouped(3, min_saving=0.0, min_slots=1)     # split wherever a bucket saves a slot
    if order is None:
        assert lists == [nbrs] and nbrs.buckets(3, min_saving=0.0, min_slots=1) == [nbrs]
        return
    assert sorted(order.tolist()) == list(range(num_nodes))
    assert Neighbours.consecutive(lists) and not Neighbours.consecutive(lists[::-1])
    covered = sum(b.src.shape[0] for b in lists)
    assert set(order[covered:].tolist()) == set(range(num_nodes)) - set(dst.tolist())
    for b in lists:
        assert torch.equal(b.rows(), torch.arange(b.start, b.start + b.src.shape[0]))
        assert bool((b.src[~b.mask] == num_nodes).all())
    back = sorted((int(order[b.rows()[r]]), int(order[b.src[r, k]]))
                  for b in lists for r, k in zip(*b.mask.nonzero(as_tuple=True)))
    assert back == sorted(zip(dst.tolist(), src.tolist()))
    x = torch.randn(num_nodes, 4, generator=g)
    for b in lists:
        assert torch.equal(b.at_rows(x), x.index_select(0, b.rows()))


def test_outer_strategy_takes_only_paths_pairing_fragment_c_with_c():
    """A plan whose paths are not all c-with-c (here: fragment 0 with fragment 0 written twice) is
    not the outer strategy's, whatever its kind."""
    from so3net.plan import CGPlan, Path
    odd = CGPlan("diag", (2,), (2,), (2,), 0, "complex", (Path(0, 0, 0, (0, 0), (0, 0), (0, 1)),))
    assert not covers(odd)
    assert covers(cg_plan((2, 2), (2, 2), 1, "diag", "complex"))


def test_grouped_refuses_lists_it_cannot_renumber():
    """Renumbering needs all nodes as rows and sources among those nodes."""
    dst = torch.tensor([i for i in range(10)] + [10] * 8 + [11] * 8)
    nbrs = Neighbours.from_edges((dst + 1) % 12, dst, 12)
    with pytest.raises(ValueError, match="list of all nodes"):
        Neighbours(nbrs.src, nbrs.mask, torch.arange(12)).grouped(3)
    more_sources = Neighbours.from_edges((dst + 1) % 12, dst, 12, num_sources=20)
    with pytest.raises(ValueError, match="sources are those n = 12 nodes"):
        more_sources.grouped(3)


def test_buckets_cut_where_the_padding_is_least():
    """Degrees 1 x 10 and 8 x 2: one list has 12 x 8 slots, two buckets 10 x 1 + 2 x 8."""
    dst = torch.tensor([i for i in range(10)] + [10] * 8 + [11] * 8)
    src = (dst + 1) % 12
    nbrs = Neighbours.from_edges(src, dst, 12)
    lists = nbrs.buckets(3)
    assert [tuple(b.src.shape) for b in lists] == [(10, 1), (2, 8)]
    assert len(nbrs.buckets(1)) == 1 and nbrs.buckets(1)[0] is nbrs
    uniform_degree = Neighbours.from_edges(torch.arange(6) % 3, torch.arange(6) // 2, 3)
    assert len(uniform_degree.buckets(3)) == 1 and uniform_degree.buckets(3)[0] is uniform_degree


def test_buckets_pack_rows_with_holes_first():
    """A hand-made list may leave an empty slot before a neighbour; no edge is cut off."""
    src = torch.tensor([[3, 1], [0, 2], [3, 3]])
    lists = Neighbours(src, src < 3).buckets(3)
    edges = sorted((int(b.rows()[r]), int(b.src[r, k])) for b in lists for r, k in zip(*b.mask.nonzero(as_tuple=True)))
    assert edges == [(0, 1), (1, 0), (1, 2)]
