"""Channel-wise CG products as "outer product, then sparse CG contraction" (the outer strategy).

A channel-wise (``diag``) plan whose operands have the same fragment count C in every present part
pairs fragment c of every part of x with fragment c of every part of y. It is a fixed real linear
map W of the channel-wise outer product::

    z[k, c] = sum_ab W[k, ab] x[a, c] y[b, c]

with a, b running over the (l, m) rows of the present parts of x and y and k over the output rows
(part l, then m, then path block): at most 2 min(l1, l2) + 1 nonzeros per row, stored as a sparse
matrix (:class:`OuterContraction`, built from ``plan.coefficients``). Because W is linear, a sum of
products is the contraction of the summed outer products, so the message-passing product
``out_i = sum_{e: dst(e) = i} P(edge_e, node_src(e))`` applies W once per node, never per edge:
the per-node sums ``S_i = sum_j edge_ij (x) node_j`` are one batched matmul over the padded
neighbour layout (:class:`Neighbours`).

Layouts. Packed vectors are those of :mod:`so3net.plan`; with C fragments in every present part a
packed ``(B, dim)`` tensor is ``(B, D, C)``, D = sum over present parts of 2l + 1 (the SO3part
layout ``(2l+1, C)`` of each part, stacked). The outer products are complex elementwise products,
the per-node sums complex batched matmuls (:func:`batched_matmul`, whose backward avoids torch's
per-batch fallback for conjugate views), and W, being real, acts on the real and imaginary planes
(``torch.view_as_real``) as one real sparse matmul. Real-basis plans take real (or complex) data
the same way. Everything is differentiable to any order. The
output rows of W are the packed output layout: part l, row m, path block b, channel c is fragment
``b C + c`` of part l. (A variant on real planes throughout, with no conjugate at all, ran 1.6x
slower on the CPU: its extra elementwise passes outweigh the two conjugate copies it saves.)

Entry points: :func:`channelwise_product` (row-wise, e.g. the CG square of
:func:`channelwise_square_plan`), :func:`padded_message_product` (edges in the padded slot layout)
and :func:`message_passing_product` (the edge-list contract of
:func:`so3net.kernels.dispatch.message_passing_product`, unweighted). :func:`strategy` says which
evaluation the backend in force selects: this one under the CPU backends ("native", "torch"), the
Triton kernels' fused products under "triton" (CUDA). The torch twin and Triton kernels
evaluate the same plans per edge; tests compare them in float64.
"""
from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..plan import CGPlan, Path, cg_plan
from . import dispatch

__all__ = ["uniform_channels", "channelwise_square_plan", "OuterContraction", "outer_contraction", "Neighbours",
           "batched_matmul", "strategy", "covers", "channelwise_product", "row_product", "padded_message_product",
           "message_passing_product", "neighbour_message_product", "fused", "higher_order", "EdgeFactors", "pair_dots"]


def strategy(like: torch.Tensor, backend: str | None = None) -> str:
    """How channel-wise products on tensors like ``like`` are evaluated under the backend in force
    (``backend``, else :func:`so3net.kernels.dispatch.backend` for their device): ``"outer"`` (this
    module) under the CPU backends ("native", "torch"); ``"fused"`` under "triton", whose kernels
    evaluate the plan per row and per edge with no per-edge intermediate (the outer strategy's
    dense batched matmuls would not be)."""
    name = backend or dispatch.backend(device=like.device)
    if name not in dispatch.BACKENDS:
        raise ValueError(f"backend must be one of {dispatch.BACKENDS}, got {name!r}")
    return "fused" if name == "triton" else "outer"


def uniform_channels(tau) -> int:
    """The common fragment count C of a type whose present parts all have C fragments (else raises)."""
    counts = {int(n) for n in tau if n}
    if len(counts) != 1:
        raise ValueError(f"the outer strategy needs the same fragment count in every present part, got tau={tuple(tau)}")
    return counts.pop()


def _rows(tau) -> int:
    return sum(2 * l + 1 for l, n in enumerate(tau) if n)


@lru_cache(maxsize=None)
def channelwise_square_plan(tau: tuple[int, ...], maxl: int, basis: str = "complex") -> CGPlan:
    """Plan of the channel-wise CG square ``x (x)cg x``, Sym² blocks only.

    Only blocks l1 <= l2 are kept, and for l1 == l2 only the output l with l1 + l2 - l even: the
    dropped blocks equal +-(kept ones) or vanish identically (<l2 m2; l1 m1|l m> = (-1)^{l1+l2-l}
    <l1 m1; l2 m2|l m>), so after a fragment mixing the span is that of the full channel-wise square.
    """
    full = cg_plan(tuple(tau), tuple(tau), maxl, "diag", basis)
    counts = [0] * (maxl + 1)
    paths = []
    for p in full.paths:
        if p.l1 > p.l2 or (p.l1 == p.l2 and (p.l1 + p.l2 - p.l) % 2 == 1):
            continue
        out = tuple(range(counts[p.l], counts[p.l] + p.size))
        counts[p.l] += p.size
        paths.append(Path(p.l1, p.l2, p.l, p.left, p.right, out, p.connection))
    while len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    return CGPlan("diag", full.tau1, full.tau2, tuple(counts), full.maxl, full.basis, tuple(paths),
                  name="channel-wise square")


class _SparseLeft(torch.autograd.Function):
    """``w @ x`` for a constant sparse real ``w``; backward ``wt @ g`` by the same Function (any order)."""

    @staticmethod
    def forward(ctx, x, w, wt):
        ctx.mats = (w, wt)
        return torch.sparse.mm(w, x)

    @staticmethod
    def backward(ctx, g):
        w, wt = ctx.mats
        return _SparseLeft.apply(g, wt, w), None, None


class OuterContraction:
    """A channel-wise plan's coefficients as a sparse ``(K, D1 D2)`` real matrix (see module doc).

    Rows k: part l, row m, path block (in output-fragment order); columns ``a D2 + b`` with a, b the
    rows of the present parts of x and y in packed order.
    """

    def __init__(self, plan: CGPlan):
        if plan.coef_perm != (0, 1, 2) or plan.conj_right or any(p.connection != "channelwise" for p in plan.paths):
            raise ValueError(f"the outer strategy evaluates forward plans whose paths are all channel-wise, got "
                             f"kind={plan.kind!r} with connections {sorted({p.connection for p in plan.paths})}"
                             f"{' reading conj(y)' if plan.conj_right else ''}")
        self.plan = plan
        self.channels = uniform_channels(plan.tau1 + plan.tau2)
        if any(n % self.channels for n in plan.tau_out):
            raise ValueError(f"output type {plan.tau_out} is not made of blocks of {self.channels} fragments")
        ramp = tuple(range(self.channels))
        for p in plan.paths:
            if p.left != ramp or p.right != ramp:
                raise ValueError(f"path {p.l1} x {p.l2} -> {p.l} does not pair fragment c with fragment c, c < "
                                 f"{self.channels}")
            if p.out[0] % self.channels or p.out != tuple(range(p.out[0], p.out[0] + self.channels)):
                raise ValueError(f"path {p.l1} x {p.l2} -> {p.l} does not write one block of {self.channels} fragments")
        self.dim1, self.dim2 = _rows(plan.tau1), _rows(plan.tau2)
        self.num_rows = sum((2 * l + 1) * n for l, n in enumerate(plan.tau_out)) // self.channels
        self.dense = self._matrix()
        self._cache: dict = {}

    @staticmethod
    def _row_offsets(tau) -> dict[int, int]:
        offs, o = {}, 0
        for l, n in enumerate(tau):
            if n:
                offs[l], o = o, o + 2 * l + 1
        return offs

    def _matrix(self) -> np.ndarray:
        plan, C = self.plan, self.channels
        o1, o2 = self._row_offsets(plan.tau1), self._row_offsets(plan.tau2)
        W = np.zeros((self.num_rows, self.dim1, self.dim2))
        first = 0
        for l, n in enumerate(plan.tau_out):
            blocks = n // C
            for p in plan.paths:
                if p.l != l:
                    continue
                block, coef = p.out[0] // C, plan.coefficients(p)
                for m in range(2 * l + 1):
                    W[first + m * blocks + block, o1[p.l1]:o1[p.l1] + 2 * p.l1 + 1,
                      o2[p.l2]:o2[p.l2] + 2 * p.l2 + 1] = coef[:, :, m]
            first += (2 * l + 1) * blocks
        return W.reshape(self.num_rows, self.dim1 * self.dim2)

    def fused_rows(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """W's rows for the fused kernel (``native/padded_msg.c``): ``(wrow (K+1,), columns,
        coefficients)``, int64, int64 and the real dtype of ``dtype``; row r's terms are
        ``[wrow[r], wrow[r+1])``, term t at column ``a D2 + b`` of W. Cached per dtype."""
        real = dtype.to_real() if dtype.is_complex else dtype
        key = ("fused", real)
        if key not in self._cache:
            rows, cols = np.nonzero(self.dense)            # row-major: rows ascending
            wrow = np.searchsorted(rows, np.arange(self.num_rows + 1))
            self._cache[key] = (torch.as_tensor(wrow, dtype=torch.int64), torch.as_tensor(np.ascontiguousarray(cols), dtype=torch.int64),
                                torch.as_tensor(self.dense[rows, cols], dtype=real))
        return self._cache[key]

    def matrices(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, Wᵀ)`` as sparse CSR tensors of the given real dtype (cached)."""
        key = (dtype, device)
        if key not in self._cache:
            dense = torch.as_tensor(self.dense, device=device).to(dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                self._cache[key] = (dense.to_sparse_csr(), dense.t().contiguous().to_sparse_csr())
        return self._cache[key]

    def apply(self, P: torch.Tensor) -> torch.Tensor:
        """Outer products ``P (D1, D2, C, B)`` (complex: W acts on the real and imaginary planes) ->
        packed output ``(B, plan.dim_out)`` of P's dtype."""
        C, B = P.shape[2:]
        if P.shape != (self.dim1, self.dim2, self.channels, B):
            raise ValueError(f"outer products must have shape ({self.dim1}, {self.dim2}, {self.channels}, B), "
                             f"got {tuple(P.shape)}")
        planes = torch.view_as_real(P.contiguous()) if P.is_complex() else P.contiguous()[..., None]
        q = planes.shape[-1]
        w, wt = self.matrices(planes.dtype, planes.device)
        z = _SparseLeft.apply(planes.reshape(self.dim1 * self.dim2, C * B * q), w, wt).reshape(self.num_rows, C, B, q)
        z = torch.view_as_complex(z) if P.is_complex() else z[..., 0]     # transposed as complex: 8x faster
        return z.permute(2, 0, 1).reshape(B, self.num_rows * C)


def covers(plan: CGPlan) -> bool:
    """Whether the outer strategy evaluates ``plan``: a forward channel-wise plan whose present parts
    all have the same fragment count and whose paths each write one block of them."""
    try:
        outer_contraction(plan)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=None)
def outer_contraction(plan: CGPlan) -> OuterContraction:
    """The cached :class:`OuterContraction` of a plan."""
    return OuterContraction(plan)


def _bmm_ready(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when bmm reads it directly (row- or column-major matrices), else a contiguous copy."""
    s = t.stride()
    if t.is_conj() or not (s[2] == 1 or s[1] == 1):
        return t.resolve_conj().contiguous()
    return t


def _conj(t: torch.Tensor) -> torch.Tensor:
    return t.conj_physical() if t.is_complex() else t


class _Bmm(torch.autograd.Function):
    """``torch.bmm`` whose complex backward conjugates the smaller side (the operand, or the gradient
    and the result) with one contiguous copy and lets bmm read transposes in place: torch's own
    backward hands bmm conjugate views, for which it runs one small GEMM per batch entry.
    Differentiable to any order."""

    @staticmethod
    def forward(ctx, a, b):
        a, b = _bmm_ready(a), _bmm_ready(b)
        ctx.save_for_backward(a, b)
        return torch.bmm(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g = _bmm_ready(g)
        ga = gb = None
        if ctx.needs_input_grad[0]:   # g b^H, or conj(conj(g) b^T) when b is the larger tensor
            ga = (_Bmm.apply(g, _conj(b).transpose(1, 2)) if b.numel() <= g.numel() + a.numel()
                  else _conj(_Bmm.apply(_conj(g), b.transpose(1, 2))))
        if ctx.needs_input_grad[1]:   # a^H g, or conj(a^T conj(g)) when a is the larger tensor
            gb = (_Bmm.apply(_conj(a).transpose(1, 2), g) if a.numel() <= g.numel() + b.numel()
                  else _conj(_Bmm.apply(a.transpose(1, 2), _conj(g))))
        return ga, gb


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)`` with the fast complex backward of ``_Bmm`` (any order)."""
    return _Bmm.apply(a, b)


def _check_data(plan: CGPlan, *ts: torch.Tensor) -> None:
    """Complex data for complex-basis plans, real or complex data for real-basis plans, one dtype."""
    if plan.basis == "complex" and not all(t.is_complex() for t in ts):
        raise TypeError(f"a complex-basis plan needs complex tensors, got {[str(t.dtype) for t in ts]}")
    if len({t.dtype for t in ts}) != 1:
        raise TypeError(f"operands must share one dtype, got {[str(t.dtype) for t in ts]}")


def channelwise_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """Row-wise ``P(x, y)`` of a channel-wise plan by the outer strategy: packed
    ``x (B, plan.dim1)``, ``y (B, plan.dim2)`` -> ``(B, plan.dim_out)``. ``x`` and ``y`` may be the
    same tensor (a square)."""
    con = outer_contraction(plan)
    C = con.channels
    if x.shape[1:] != (plan.dim1,) or y.shape != (x.shape[0], plan.dim2):
        raise ValueError(f"plan {plan.tau1} x {plan.tau2} expects (B, {plan.dim1}) and (B, {plan.dim2}), "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    _check_data(plan, x, y)
    u = x.reshape(x.shape[0], con.dim1, C).permute(1, 2, 0).contiguous()            # (D1, C, B)
    v = u if y is x else y.reshape(y.shape[0], con.dim2, C).permute(1, 2, 0).contiguous()
    return con.apply(u[:, None] * v[None, :])


def row_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """Row-wise ``P(x, y)`` of a channel-wise plan (no edges, e.g. a CG square) by the evaluation
    the backend in force does fastest: the compiled kernels' row product under "native" (it reads
    only the nonzero CG terms: 346 against 357 ms per Cormorant QM9 step), the outer strategy
    (:func:`channelwise_product`) under "torch" (70 against 81 ms per ethanol force step by the
    torch twin), the fused Triton kernels under "triton"."""
    name = dispatch.backend(device=x.device)
    if name == "torch" and covers(plan):
        return channelwise_product(x, y, plan)
    return dispatch.cg_product(x, y, plan)


@dataclass(frozen=True)
class Neighbours:
    """Padded neighbour lists: slot ``(i, k)`` holds the k-th neighbour of destination row i;
    ``src (n, d)`` (the number of source nodes in empty slots), ``mask (n, d)``. d is the largest
    neighbour count: memory n d, never n². ``dst (n,)``: the destination node of every row, or None
    when row i is node i (all nodes, in order); :meth:`buckets` makes lists of some nodes. ``start``:
    set when row i is node ``start + i`` (consecutive nodes, as :meth:`grouped` makes them; ``dst``
    is then that range), so that reading the rows' nodes is a slice, not a gather."""
    src: torch.Tensor
    mask: torch.Tensor
    dst: torch.Tensor | None = None
    start: int | None = None

    @staticmethod
    def from_edges(src: torch.Tensor, dst: torch.Tensor, num_nodes: int, num_sources: int | None = None) -> "Neighbours":
        """Slots of an edge list (message src -> dst) for ``num_nodes`` destinations and
        ``num_sources`` (default ``num_nodes``) sources; a node's neighbours keep the edge-list order."""
        num_sources = num_nodes if num_sources is None else num_sources
        with torch.no_grad():
            order = torch.argsort(dst, stable=True)
            deg = torch.bincount(dst, minlength=num_nodes)
            d = int(deg.max()) if dst.numel() else 0
            rank = torch.arange(dst.numel(), device=dst.device) - (torch.cumsum(deg, 0) - deg)[dst[order]]
            slots = torch.full((num_nodes, d), num_sources, dtype=torch.long, device=dst.device)
            slots[dst[order], rank] = src[order]
        return Neighbours(slots, slots < num_sources)

    def rows(self) -> torch.Tensor:
        """The destination node of every row (``dst``, or ``arange(n)``)."""
        return torch.arange(self.src.shape[0], device=self.src.device) if self.dst is None else self.dst

    def at_rows(self, t: torch.Tensor) -> torch.Tensor:
        """The rows of ``t`` (nodes along dim 0) at this list's destinations: ``t`` itself (all nodes
        in order), a slice (consecutive nodes) or a gather."""
        if self.dst is None:
            return t
        if self.start is not None:
            return t.narrow(0, self.start, self.src.shape[0])
        return t.index_select(0, self.dst)

    def grouped(self, max_buckets: int = 3, **options) -> tuple[torch.Tensor | None, list["Neighbours"]]:
        """:meth:`buckets` with the nodes renumbered so that every bucket's rows are consecutive
        nodes: returns ``(order, lists)``, ``order[i]`` the node of this list that becomes node i
        (the buckets' nodes in bucket order, then the nodes without neighbours), and the buckets in
        the new numbering, bucket k holding nodes ``start_k .. start_k + n_k - 1`` with ``start_0 = 0``.
        A caller that permutes its node tensors by ``order`` reads every bucket's nodes as a slice
        and writes the buckets' results by one concatenation instead of a gather and a scatter per
        layer. ``(None, [self])`` when one list is best. Needs a list of all n nodes (``dst`` None)
        whose sources are the same nodes (empty slots hold n). ``options``: those of :meth:`buckets`."""
        lists = self.buckets(max_buckets, **options)
        if len(lists) == 1 and lists[0] is self:
            return None, [self]
        n = self.src.shape[0]
        with torch.no_grad():
            if self.dst is not None or not bool(torch.where(self.mask, self.src < n, self.src == n).all()):
                raise ValueError("Neighbours.grouped renumbers the nodes of a list of all nodes (dst None) whose "
                                 f"sources are those n = {n} nodes (empty slots holding {n})")
            covered = torch.cat([b.dst for b in lists])
            alone = torch.ones(n, dtype=torch.bool, device=covered.device)
            alone[covered] = False
            order = torch.cat([covered, alone.nonzero().squeeze(1)])
            new = torch.empty_like(order)
            new[order] = torch.arange(n, device=order.device)
            new = torch.cat([new, new.new_full((1,), n)])        # an empty slot (source n) stays empty
            out, start = [], 0
            for b in lists:
                rows = b.src.shape[0]
                out.append(Neighbours(new[b.src], b.mask, torch.arange(start, start + rows, device=order.device), start))
                start += rows
        return order, out

    @staticmethod
    def consecutive(lists: list["Neighbours"]) -> bool:
        """Whether the lists' rows are the nodes 0, 1, ... in order, list after list (:meth:`grouped`)."""
        start = 0
        for b in lists:
            if b.start != start:
                return False
            start += b.src.shape[0]
        return True

    def buckets(self, max_buckets: int = 3, min_saving: float = 0.1, min_slots: int = 64) -> list["Neighbours"]:
        """The same edges as up to ``max_buckets`` lists of nodes grouped by neighbour count, each
        padded to its own largest count (empty slots cost as much as edges in every padded op).

        Nodes are sorted by count and cut where the padded slots ``sum_g n_g d_g`` are fewest (exact,
        by dynamic programming over the distinct counts); one more bucket is added only if it saves at
        least ``min_saving`` of the slots of the best partition with one bucket fewer, and at least
        ``min_slots`` slots (each list runs its own ops, a fixed cost that few slots do not repay:
        on 16 ethanol molecules, where a second list saves 8 % of the slots, a force-training step
        took 129 ms with two lists and 109 ms with one). Every edge is in exactly one bucket; a node
        without neighbours is in none. Returns ``[self]`` when no second bucket is worth it (always
        for ``max_buckets=1``). Rows whose filled slots do not come first (a hand-made list) are
        packed first, so no edge is cut off."""
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be >= 1, got {max_buckets}")
        src, mask = self.src, self.mask
        with torch.no_grad():
            if mask.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):   # a hole before a neighbour
                first = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
                src, mask = src.gather(1, first), mask.gather(1, first)
            deg = mask.sum(1)
            order = torch.argsort(deg, stable=True)
            counts = deg[order].tolist()
        n = len(counts)
        first = next((i for i, c in enumerate(counts) if c), n)      # nodes without neighbours: no bucket
        cuts = self._best_cuts(counts, first, max_buckets, min_saving, min_slots)
        if cuts is None:
            return [self]
        rows = self.rows()
        out = []
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            sel, d = order[lo:hi], counts[hi - 1]
            out.append(Neighbours(src[sel, :d], mask[sel, :d], rows[sel]))
        return out

    @staticmethod
    def _best_cuts(counts: list[int], first: int, max_buckets: int, min_saving: float, min_slots: int) -> list[int] | None:
        """Cut points ``first = c_0 < ... < c_K = n`` of the sorted counts minimising the padded
        slots, each extra bucket saving ``min_saving`` of the slots before it and ``min_slots``; None
        when one list is best. Cuts fall only where the count changes, so the dynamic programme runs
        over the distinct counts."""
        n = len(counts)
        if n == first:
            return None
        ends = [i + 1 for i in range(first, n) if i + 1 == n or counts[i + 1] != counts[i]]   # group ends
        starts = [first] + ends[:-1]
        m = len(ends)
        # best[k][g]: fewest slots covering groups g.. with k buckets, and the group after the first bucket
        best = [[(float("inf"), m)] * (m + 1) for _ in range(max_buckets + 1)]
        for k in range(1, max_buckets + 1):
            best[k][m] = (0, m)
            for g in range(m - 1, -1, -1):
                if k == 1:
                    best[k][g] = ((n - starts[g]) * counts[-1], m)
                    continue
                best[k][g] = min(((ends[h - 1] - starts[g]) * counts[ends[h - 1] - 1] + best[k - 1][h][0], h)
                                 for h in range(g + 1, m + 1))
        k = 1
        while k < max_buckets and best[k][0][0] - best[k + 1][0][0] >= max(min_saving * best[k][0][0], min_slots, 1):
            k += 1
        if k == 1:
            return None
        cuts, g = [first], 0
        for kk in range(k, 0, -1):
            g = best[kk][g][1]
            cuts.append(ends[g - 1])
        return cuts

    @property
    def num_edges(self) -> int:
        return int(self.mask.sum())

    def gather(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Node rows of ``t`` (nodes along ``dim``) at every slot's source: the node axis becomes
        ``(N, d)``, zeros in empty slots; contiguous."""
        pad = t.new_zeros(t.shape[:dim] + (1,) + t.shape[dim + 1:])
        out = torch.cat([t, pad], dim).index_select(dim, self.src.reshape(-1))
        return out.reshape(t.shape[:dim] + tuple(self.src.shape) + t.shape[dim + 1:])

    def sources(self, node: torch.Tensor, channels: int) -> torch.Tensor:
        """The source nodes' packed features ``node (n, D C)`` per slot, in the layout that
        :func:`padded_message_product` reads: ``(C, N, d, D)``."""
        rows = node.reshape(node.shape[0], node.shape[1] // channels, channels)
        return self.gather(rows.permute(2, 0, 1).contiguous(), dim=1)


def padded_message_product(edge: torch.Tensor, sources: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """``out_i = sum_k P(edge[i, k], node[src[i, k]])`` over the slots of every node, by one batched
    matmul of the summed outer products and one sparse contraction.

    ``edge``: the edge operand per slot, ``(N, d, D1, C)`` (the packed layout per slot), zero
    in empty slots (or the sources are); fastest when its memory is ordered ``(C, N, D1, d)`` — any
    strides are accepted. ``sources``: :meth:`Neighbours.sources` of the node operand. Returns packed
    complex ``(N, plan.dim_out)``.
    """
    con = outer_contraction(plan)
    C, N, d, D2 = sources.shape
    if edge.shape != (N, d, con.dim1, con.channels) or (C, D2) != (con.channels, con.dim2):
        raise ValueError(f"plan {plan.tau1} x {plan.tau2} expects edge (N, d, {con.dim1}, {con.channels}) "
                         f"and sources ({con.channels}, N, d, {con.dim2}); got {tuple(edge.shape)} and "
                         f"{tuple(sources.shape)}")
    _check_data(plan, edge, sources)
    a = edge.permute(3, 0, 2, 1).reshape(C * N, con.dim1, d)
    if D2 == 1:   # a matrix-vector product per (channel, node): elementwise, not a GEMM of inner size 1 in backward
        S = (a * sources.reshape(C * N, 1, d)).sum(2, keepdim=True)
    else:
        S = batched_matmul(a, sources.reshape(C * N, d, D2))
    # (C N, D1 D2) -> (D1 D2, C N) as one 2-D transpose: torch copies it ~5x faster than the equivalent 4-D permute
    return con.apply(S.reshape(C * N, con.dim1 * D2).t().contiguous().view(con.dim1, D2, C, N))


def message_passing_product(edge: torch.Tensor, node: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                            plan: CGPlan, num_nodes: int | None = None) -> torch.Tensor:
    """``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]])`` for a channel-wise plan by the outer
    strategy: packed ``edge (E, plan.dim1)``, ``node (n, plan.dim2)`` -> ``(num_nodes,
    plan.dim_out)`` (``num_nodes`` defaults to ``n``). The contract of the unweighted
    :func:`so3net.kernels.dispatch.message_passing_product`; differentiable to any order."""
    con = outer_contraction(plan)
    num_nodes = node.shape[0] if num_nodes is None else int(num_nodes)
    if edge.shape != (src.shape[0], plan.dim1) or node.shape[1:] != (plan.dim2,) or dst.shape != src.shape:
        raise ValueError(f"message product expects edge (E, {plan.dim1}), node (n, {plan.dim2}) and src, dst (E,); "
                         f"got {tuple(edge.shape)}, {tuple(node.shape)}, {tuple(src.shape)}, {tuple(dst.shape)}")
    nbrs = Neighbours.from_edges(src, dst, num_nodes, node.shape[0])
    with torch.no_grad():
        slot = torch.nonzero(nbrs.mask.reshape(-1)).squeeze(1)          # slots in (dst, edge order)
        order = torch.argsort(dst, stable=True)
    _check_data(plan, edge, node)
    slots = edge.new_zeros(num_nodes * nbrs.src.shape[1], con.dim1, con.channels)
    slots = slots.index_copy(0, slot, edge.reshape(edge.shape[0], con.dim1, con.channels)[order])
    return padded_message_product(slots.reshape(num_nodes, nbrs.src.shape[1], con.dim1, con.channels),
                                  nbrs.sources(node, con.channels), plan)


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` contiguous, with lazy conjugation and negation applied (what the compiled kernels read)."""
    return t.resolve_conj().resolve_neg().contiguous()


def _slots(nbrs: "Neighbours") -> torch.Tensor:
    """The list's source slots as the compiled kernels read them: contiguous int64."""
    return nbrs.src.to(torch.int64).contiguous()


def _degree_of_rows(L1: int, device) -> torch.Tensor:
    """``[l repeated 2l + 1 times, l < L1]``: the degree of each row of parts 0..L1-1 in order."""
    return torch.as_tensor([l for l in range(L1) for _ in range(2 * l + 1)], device=device)


def _sum_by_degree(t: torch.Tensor, dim: int, L1: int) -> torch.Tensor:
    """The sums of the 2l + 1 rows of each degree l < L1 of ``t`` along ``dim`` (torch ops)."""
    return torch.stack([t.narrow(dim, l * l, 2 * l + 1).sum(dim) for l in range(L1)], dim)


class _RowsByDegree(torch.autograd.Function):
    """``s.index_select(dim, l_of)`` with ``l_of = [l repeated 2l + 1 times, l < L1]``: one row of
    degree l per m. Its backward sums the 2l + 1 gradient rows of each l (torch's index_select
    backward scatters them, 4-5x slower here); made of torch ops, so differentiable to any order."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, dim: int):
        ctx.meta = (dim, s.shape[dim])
        return s.index_select(dim, _degree_of_rows(s.shape[dim], s.device))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        dim, L1 = ctx.meta
        return _sum_by_degree(g, dim, L1), None


@dataclass(frozen=True)
class EdgeFactors:
    """An edge operand in factored form: fragment c of part l of slot (i, k) is
    ``scalars[i, k, l, c] · harmonics[i, k, (l, m)]`` (Cormorant's Υ = edge scalars ⊗ spherical
    harmonics). ``scalars (N, d, L1, C)``, ``harmonics (N, d, L1²)`` (part l at ``[l², (l+1)²)``).
    :func:`neighbour_message_product` reads it without forming Υ under the "native" backend."""
    scalars: torch.Tensor
    harmonics: torch.Tensor

    def __post_init__(self):
        N, d, L1, C = self.scalars.shape
        if self.harmonics.shape != (N, d, L1 * L1):
            raise ValueError(f"harmonics must have shape {(N, d, L1 * L1)} for scalars {tuple(self.scalars.shape)}, "
                             f"got {tuple(self.harmonics.shape)}")

    def materialize(self) -> torch.Tensor:
        """Υ ``(N, d, L1², C)``, stored as (C, N, L1², d): the matrices :func:`padded_message_product`'s
        batched matmul reads, contiguous."""
        s = _RowsByDegree.apply(self.scalars.permute(3, 0, 2, 1).contiguous(), 2)     # (C, N, D, d)
        return (s * self.harmonics.transpose(1, 2).contiguous()).permute(1, 3, 2, 0)   # Y as (N, D, d)


class _FusedMessage(torch.autograd.Function):
    """:func:`padded_message_product` of ``EdgeFactors(scalars, harmonics).materialize()`` and
    ``nbrs.sources(node)`` by the compiled fused kernel (``native/padded_msg.c``; complex CPU data):
    no Υ, no gathered sources, no per-node outer products in memory. The backward runs the kernel;
    when the graph of the gradient is recorded (``create_graph``, e.g. a force loss) it computes the
    same gradients by the outer strategy's torch ops instead (:func:`_partials_by_torch_ops`), so
    gradients of any order exist."""

    @staticmethod
    def forward(ctx, scalars, harmonics, node, nbrs, plan):
        from . import native
        con = outer_contraction(plan)
        ctx.save_for_backward(scalars, harmonics, node)
        ctx.meta = (nbrs, plan, _slots(nbrs))
        return native.message_forward(native.library("native"), scalars, harmonics, node, ctx.meta[2],
                                      con.fused_rows(scalars.dtype), con.num_rows)

    @staticmethod
    def backward(ctx, gz):
        from . import native
        saved = ctx.saved_tensors
        nbrs, plan, src = ctx.meta
        want = tuple(ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():
            return (*_partials_by_torch_ops(gz, *saved, nbrs, plan, want), None, None)
        con = outer_contraction(plan)
        grads = native.message_backward(native.library("native"), gz, *saved, src, con.fused_rows(gz.dtype),
                                        con.num_rows, want)
        return (*grads, None, None)


def _partials_by_torch_ops(gz, scalars, harmonics, node, nbrs, plan, want) -> tuple:
    """The gradients of :class:`_FusedMessage` by differentiable torch ops (the graph of the gradient
    recorded). They are partial derivatives: the scalars may themselves depend on the node
    features (Cormorant's edge scalars do, through F_i · F_j), so they are taken with respect to
    the formed operand Υ and the gathered sources, then carried back by the explicit rules of Υ =
    s ⊗ Y and of the gather."""
    C, L1 = scalars.shape[-1], scalars.shape[2]
    edge = EdgeFactors(scalars, harmonics).materialize() if want[0] or want[1] else EdgeFactors(
        scalars.detach(), harmonics.detach()).materialize()
    sources = nbrs.sources(node if want[2] else node.detach(), C)
    z = padded_message_product(edge, sources, plan)
    wrt = [t for t, w in ((edge, want[0] or want[1]), (sources, want[2])) if w]
    grads = iter(torch.autograd.grad(z, wrt, gz, create_graph=True))
    g_edge = next(grads) if want[0] or want[1] else None                        # (N, d, D1, C)
    g_src = next(grads) if want[2] else None                                    # (C, N, d, D2)
    gs = gy = gn = None
    if want[0]:
        gs = _sum_by_degree(g_edge * harmonics[..., None].conj(), 2, L1)
    if want[1]:
        gy = (g_edge * scalars.index_select(2, _degree_of_rows(L1, scalars.device)).conj()).sum(-1)
    if want[2]:
        n, D2 = node.shape[0], node.shape[1] // C
        flat = g_src.reshape(C, -1, D2)
        gn = flat.new_zeros(C, n + 1, D2).index_add(1, nbrs.src.reshape(-1), flat)[:, :n]
        gn = gn.permute(1, 2, 0).reshape(n, D2 * C)
    return gs, gy, gn


_STATE = threading.local()


@contextmanager
def higher_order():
    """``with higher_order():`` evaluates the neighbour sums by torch ops (:func:`fused` is False,
    this thread only): for computations whose gradient will be differentiated again, e.g. forces
    in a loss (``Cormorant.energy_and_forces(create_graph=True)`` uses it). The compiled kernels'
    backward would then re-run the same torch ops to record the graph of the gradient."""
    before = getattr(_STATE, "higher", False)
    _STATE.higher = True
    try:
        yield
    finally:
        _STATE.higher = before


def fused(like: torch.Tensor) -> bool:
    """Whether :func:`neighbour_message_product` (of an :class:`EdgeFactors` operand) and
    :func:`pair_dots` run the compiled kernels on tensors like ``like``: complex64/complex128 CPU
    data under the "native" backend, outside :func:`higher_order`. (The operands must then also
    share one dtype and device; otherwise, and for a formed Υ, the torch ops run.)"""
    return (like.device.type == "cpu" and like.dtype in (torch.complex64, torch.complex128)
            and not getattr(_STATE, "higher", False) and dispatch.backend(device=like.device) == "native")


def neighbour_message_product(edge: torch.Tensor | EdgeFactors, node: torch.Tensor, nbrs: Neighbours, plan: CGPlan,
                              sources: torch.Tensor | None = None) -> torch.Tensor:
    """``out_i = sum_k P(edge[i, k], node[src[i, k]])`` over the rows of ``nbrs`` for a channel-wise
    plan: packed ``(N, plan.dim_out)``. ``edge``: the edge operand ``(N, d, D1, C)`` as
    :func:`padded_message_product` reads it, or in factored form (:class:`EdgeFactors`); ``node
    (n, plan.dim2)`` the packed node features. A factored operand of complex data under the "native"
    backend (:func:`fused`) takes the compiled fused kernel; anything else the outer strategy's
    torch ops, :func:`padded_message_product` of ``sources`` (default ``nbrs.sources(node, C)``).
    The same values and gradients either way (tests compare them in float64)."""
    con = outer_contraction(plan)
    C = con.channels
    factored = isinstance(edge, EdgeFactors)
    shape = tuple(edge.scalars.shape[:2]) + (edge.scalars.shape[2] ** 2, edge.scalars.shape[3]) if factored else edge.shape
    if shape != (*nbrs.src.shape, con.dim1, C) or node.shape[1:] != (con.dim2 * C,):
        raise ValueError(f"plan {plan.tau1} x {plan.tau2} expects an edge operand {(*nbrs.src.shape, con.dim1, C)} and "
                         f"node (n, {con.dim2 * C}); got {tuple(shape)} and {tuple(node.shape)}")
    if (factored and fused(node) and edge.scalars.dtype == edge.harmonics.dtype == node.dtype
            and edge.scalars.device == edge.harmonics.device == nbrs.src.device == node.device):
        return _FusedMessage.apply(_plain(edge.scalars), _plain(edge.harmonics), _plain(node), nbrs, plan)
    edge = edge.materialize() if factored else edge
    _check_data(plan, edge, node)
    return padded_message_product(edge, nbrs.sources(node, C) if sources is None else sources, plan)


def _pair_dots_by_torch_ops(node: torch.Tensor, channels: int, parts, sources: torch.Tensor,
                            rows: torch.Tensor | Neighbours | None) -> torch.Tensor:
    """:func:`pair_dots` by one batched matmul ``sources @ (conj(F_i) per part)`` over (channel, node)."""
    C, N, d, D = sources.shape
    member = torch.zeros(D, len(parts), dtype=sources.real.dtype, device=sources.device)
    for i, (first, size) in enumerate(parts):
        member[first:first + size, i] = 1
    if isinstance(rows, Neighbours):
        node = rows.at_rows(node)
    elif rows is not None:
        node = node.index_select(0, rows)
    per_part = node.reshape(N, D, C).permute(2, 0, 1).conj()[..., None] * member     # (C, N, D, parts)
    dots = batched_matmul(sources.reshape(C * N, d, D), per_part.reshape(C * N, D, len(parts)))
    return dots.reshape(C, N, d, len(parts)).permute(1, 2, 3, 0).flatten(2)


class _PairDots(torch.autograd.Function):
    """:func:`pair_dots` by the compiled kernel (``native/pair_dots.c``): no gathered sources. The
    backward runs the kernel, or, when the graph of the gradient is recorded, the torch ops
    (``node`` is the only input, so their gradient is the one wanted), to any order."""

    @staticmethod
    def forward(ctx, node, channels, parts, nbrs):
        from . import native
        first, size = (torch.as_tensor([p[i] for p in parts], dtype=torch.int64) for i in (0, 1))
        ctx.save_for_backward(node)
        ctx.meta = (channels, parts, nbrs, first, size, nbrs.rows().to(torch.int64).contiguous(), _slots(nbrs))
        return native.pair_dots_forward(native.library("native"), node, channels, *ctx.meta[5:], first, size)

    @staticmethod
    def backward(ctx, grad):
        from . import native
        (node,) = ctx.saved_tensors
        channels, parts, nbrs, first, size, rows, src = ctx.meta
        if torch.is_grad_enabled():
            dots = _pair_dots_by_torch_ops(node, channels, parts, nbrs.sources(node, channels), nbrs)
            return torch.autograd.grad(dots, node, grad, create_graph=True)[0], None, None, None
        return (native.pair_dots_backward(native.library("native"), grad, node, channels, rows, src, first, size),
                None, None, None)


def pair_dots(node: torch.Tensor, channels: int, parts, rows: Neighbours | torch.Tensor | None,
              sources: torch.Tensor | None = None) -> torch.Tensor:
    """Atom-pair scalars ``P[i, k, p, c] = Σ_m conj(F_i[p, m, c]) F_j[p, m, c]`` for every slot (i, k):
    packed node features ``node (n, D C)``, ``parts`` the ``(first row, rows)`` of each present part
    -> ``(N, d, len(parts) C)``, part major, channel minor. ``rows``: the neighbour list itself
    (row i: node ``rows.rows()[i]``; j its k-th source; 0 in empty slots), or the node of each row
    (None: all nodes in order) with ``sources`` (:meth:`Neighbours.sources`) given. A list and
    complex data under the "native" backend (:func:`fused`) take the compiled kernel; otherwise one
    batched matmul over ``sources`` (formed from a list when not given)."""
    parts = tuple((int(a), int(b)) for a, b in parts)
    if isinstance(rows, Neighbours):
        if fused(node) and rows.src.device == node.device:
            return _PairDots.apply(_plain(node), int(channels), parts, rows)
        sources = rows.sources(node, channels) if sources is None else sources
    elif sources is None:
        raise ValueError("pair_dots needs the sources (Neighbours.sources) unless rows is the neighbour list")
    return _pair_dots_by_torch_ops(node, channels, parts, sources, rows)
