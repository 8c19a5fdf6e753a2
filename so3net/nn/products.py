"""Channel-wise CG products of the layers, evaluated as "outer product, then CG contraction".

A channel-wise (``diag``) plan of two types whose parts all have the same fragment count C reads
fragment c of every part of x with fragment c of every part of y. It is a linear map of the
channel-wise outer product ``P[a, b, c] = x[a, c] y[b, c]`` (a, b run over all (l, m) of x and y):
``z[k, c] = Σ_ab W[k, ab] P[a, b, c]`` with ``W`` the plan's CG coefficients (one row per output
(l, m, block); at most 2 min(l1, l2) + 1 nonzeros per row, stored as a sparse matrix). Features are
in the mcn layout ``(D, C, N)`` of :mod:`so3net.nn._layout`, so the outer product ``(D1, D2, C, N)``
needs no transposition before W.
:class:`CGContraction` holds W, built from ``plan.coefficients`` (the CG math stays in the plan).

Because W is linear, a sum of products is the contraction of the summed outer products:
``Σ_{e: dst(e) = i} CG(Υ_e, F_src(e)) = W · Σ_e Υ_e ⊗ F_src(e)`` — :func:`aggregate_messages`
forms the per-atom sums with one batched matmul over the padded neighbour layout
(:class:`so3net.nn.edges.Neighbours`) and applies W once per atom, never per edge. The CG nonlinearity
:func:`cg_square` is the contraction of ``x ⊗ x`` with :func:`channelwise_square_plan`.
The kernels' ``cg_product`` is the oracle the tests compare both against.

Channel-wise square: only blocks l1 <= l2 are kept, and for l1 == l2 only the output l with
l1 + l2 - l even; the dropped blocks equal ±(kept ones) or vanish identically (⟨l2 m2; l1 m1|l m⟩
= (-1)^{l1+l2-l} ⟨l1 m1; l2 m2|l m⟩), so after the mixing ``· W'`` the span is exactly that of the
full channel-wise square of the original Cormorant.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import torch

from ..plan import CGPlan, Path, cg_plan
from ._ops import SparseLeft, batched_matmul

__all__ = ["channelwise_square_plan", "message_plan", "CGContraction", "contraction", "cg_square",
           "aggregate_messages", "uniform_channels"]


@lru_cache(maxsize=None)
def channelwise_square_plan(tau: tuple[int, ...], maxl: int) -> CGPlan:
    """Plan of the channel-wise CG square of type ``tau`` (Sym² blocks only, see module doc)."""
    full = cg_plan(tuple(tau), tuple(tau), maxl, "diag")
    counts = [0] * (maxl + 1)
    paths = []
    for p in full.paths:
        if p.l1 > p.l2 or (p.l1 == p.l2 and (p.l1 + p.l2 - p.l) % 2 == 1):
            continue
        out = tuple(range(counts[p.l], counts[p.l] + p.size))
        counts[p.l] += p.size
        paths.append(Path(p.l1, p.l2, p.l, p.left, p.right, out))
    while len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    return CGPlan("diag", full.tau1, full.tau2, tuple(counts), full.maxl, full.basis, tuple(paths),
                  name="channel-wise square")


def message_plan(tau_edge: tuple[int, ...], tau_atom: tuple[int, ...], maxl: int) -> CGPlan:
    """Plan of the channel-wise product edge ⊗cg atom."""
    return cg_plan(tuple(tau_edge), tuple(tau_atom), maxl, "diag")


def uniform_channels(tau: tuple[int, ...]) -> int:
    """The common fragment count C of a type whose parts all have C fragments (else raises)."""
    counts = set(tau)
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"channel-wise products here need the same fragment count for every l, got tau={tau}")
    return tau[0]


class CGContraction:
    """The plan's coefficients as a sparse ``(K, D1 D2)`` matrix acting on channel-wise outer products.

    Rows k are ordered like the packed output (part l, then m, then block), so output fragment
    ``block C + c`` of part l is row ``(l, m, block)``, channel c; columns are ``a D2 + b`` with a, b
    the (l, m) indices of the present parts of x and y in packed order. ``apply(P)`` maps outer
    products ``P (D1, D2, C, N)`` to ``(K, C, N)``. The coefficients are real, so W acts on real
    and imaginary planes alike.
    """

    def __init__(self, plan: CGPlan):
        if plan.kind != "diag" or plan.basis != "complex":
            raise ValueError(f"CGContraction needs a complex-basis diag plan, got kind={plan.kind!r}, basis={plan.basis!r}")
        self.plan = plan
        self.channels = uniform_channels(tuple(n for n in plan.tau1 + plan.tau2 if n))
        if any(n % self.channels for n in plan.tau_out):
            raise ValueError(f"output type {plan.tau_out} is not made of blocks of {self.channels} fragments")
        self.dim1 = sum(2 * l + 1 for l, n in enumerate(plan.tau1) if n)
        self.dim2 = sum(2 * l + 1 for l, n in enumerate(plan.tau2) if n)
        self.num_rows = sum((2 * l + 1) * n for l, n in enumerate(plan.tau_out)) // self.channels
        self.dense = self._matrix()
        self._cache: dict = {}

    @staticmethod
    def _offsets(tau) -> dict[int, int]:
        offs, o = {}, 0
        for l, n in enumerate(tau):
            if n:
                offs[l], o = o, o + 2 * l + 1
        return offs

    def _matrix(self) -> np.ndarray:
        plan, o1, o2 = self.plan, self._offsets(self.plan.tau1), self._offsets(self.plan.tau2)
        W = np.zeros((self.num_rows, self.dim1, self.dim2))
        k = 0
        for l in range(len(plan.tau_out)):
            paths = sorted((p for p in plan.paths if p.l == l), key=lambda p: p.out[0])
            for m in range(2 * l + 1):
                for p in paths:
                    W[k, o1[p.l1]:o1[p.l1] + 2 * p.l1 + 1, o2[p.l2]:o2[p.l2] + 2 * p.l2 + 1] = plan.coefficients(p)[:, :, m]
                    k += 1
        return W.reshape(self.num_rows, self.dim1 * self.dim2)

    def matrices(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, Wᵀ)`` as sparse CSR tensors of the given real dtype."""
        key = (dtype, device)
        if key not in self._cache:
            dense = torch.as_tensor(self.dense, device=device).to(dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                self._cache[key] = (dense.to_sparse_csr(), dense.t().contiguous().to_sparse_csr())
        return self._cache[key]

    def apply(self, P: torch.Tensor) -> torch.Tensor:
        """Outer products ``P (D1, D2, C, N)`` -> output ``(K, C, N)`` (rows as in the class doc)."""
        C, N = P.shape[2:]
        if P.shape != (self.dim1, self.dim2, self.channels, N):
            raise ValueError(f"outer products must have shape ({self.dim1}, {self.dim2}, {self.channels}, N), "
                             f"got {tuple(P.shape)}")
        planes = torch.view_as_real(P.contiguous()).reshape(self.dim1 * self.dim2, C * N * 2)
        w, wt = self.matrices(planes.dtype, planes.device)
        return torch.view_as_complex(SparseLeft.apply(planes, w, wt).reshape(self.num_rows, C, N, 2))

    def output_rows(self) -> dict[int, tuple[int, int]]:
        """``{l: (first row, number of blocks)}``: part l is rows ``[first, first + (2l+1) blocks)``."""
        rows, first = {}, 0
        for l, n in enumerate(self.plan.tau_out):
            rows[l] = (first, n // self.channels)
            first += (2 * l + 1) * (n // self.channels)
        return rows


@lru_cache(maxsize=None)
def contraction(plan: CGPlan) -> CGContraction:
    """The cached :class:`CGContraction` of a plan."""
    return CGContraction(plan)


def cg_square(x: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """Channel-wise CG square of mcn ``x (D, C, N)`` with a :func:`channelwise_square_plan`:
    ``(K, C, N)`` rows as in :class:`CGContraction`."""
    return contraction(plan).apply(x[:, None] * x[None, :])


def aggregate_messages(scalars: torch.Tensor, harmonics: torch.Tensor, x_src: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """``out_i = Σ_k CG(Υ_ik, F_src(i,k))`` over the neighbour slots of every atom i, channel-wise.

    ``Υ_ik`` has fragment c of part l equal to ``scalars[i, k, l, c] · Y^l(r̂_ik)``: ``scalars
    (N, d, L+1, C)``, ``harmonics (N, d, (L+1)²)`` packed Y, ``x_src (C, N, d, D2)`` the source
    atoms' features (``Neighbours.gather(x.permute(1, 2, 0), dim=1)`` of mcn features x).
    Empty slots must have zero scalars or zero features. Returns ``(K, C, N)`` (see
    :class:`CGContraction`).
    """
    con = contraction(plan)
    N, d, L1, C = scalars.shape
    if con.dim1 != L1 * L1 or con.channels != C or x_src.shape != (C, N, d, con.dim2):
        raise ValueError(f"plan {plan.tau1} x {plan.tau2} expects scalars (N, d, {int(con.dim1 ** 0.5)}, "
                         f"{con.channels}) and x_src ({con.channels}, N, d, {con.dim2}); got "
                         f"{tuple(scalars.shape)} and {tuple(x_src.shape)}")
    l_of = torch.as_tensor([l for l in range(L1) for _ in range(2 * l + 1)], device=scalars.device)
    ups = scalars.permute(3, 0, 2, 1).index_select(2, l_of) * harmonics.transpose(1, 2)   # (C, N, D1, d)
    S = batched_matmul(ups.reshape(C * N, con.dim1, d), x_src.reshape(C * N, d, con.dim2))
    return con.apply(S.reshape(C, N, con.dim1, con.dim2).permute(2, 3, 0, 1))
