"""Weighted symmetric contraction: MACE's product basis on symmetric power programs.

Channel-wise: every sample b and channel c carries its own SO(3)-vector x_{b,c} of type
(1, 1, ..., 1) (one fragment per l = 0..lmax_in). The contraction is

    B^L_{b,c} = Σ_{ν=1..K} Σ_f  w^{(ν)}_{b,f,c} · Sym^ν(x_{b,c})^L_f          (L = 0..maxl)

where f runs over the fragments of Sym^ν at degree L (exactly its character multiplicity, see
:mod:`so3net.power.program`) and the weights are given per sample — MACE selects them by chemical
element: ``w_b = W[species_b]``. Since the weights only mix fragments of one L, B is equivariant
for any weights, and a polynomial of degree <= K in x.

Layouts. The input is an SO3vec of type (C, ..., C) (parts (B, 2l+1, C), channels as fragments)
or its packed form ``(B, C · Σ_l (2l+1))``; the output is an SO3vec of type (C, ..., C) with
L = 0..maxl (or its packed form). Weights of degree ν are ``(B, n_ν, C)`` (per sample) or
``(E, n_ν, C)`` (per element) with ``n_ν = Σ_L mult_ν(L)``, fragments in the order of the packed
degree-ν output (L ascending, then the program's fragment order).

Execution. The program for one fragment per l is *expanded over channels*: fragment f of a
level becomes fragments f·C + c, and every CG path pairs channel c only with channel c. The
expanded plans run through the same kernels and torch bridge as every other product.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..graph.bridge import cg_product
from ..plan import CGPlan, Path, packed_offsets
from ..types import SO3vec
from .program import PowerProgram, power_program

__all__ = ["symmetric_contraction", "SymmetricContraction", "contraction_program", "channelwise_plans"]


def contraction_program(lmax_in: int, correlation: int, maxl: int, basis: str = "complex") -> PowerProgram:
    """The program of Sym^1..Sym^correlation of one fragment per l <= lmax_in, parts L <= maxl."""
    return power_program((1,) * (lmax_in + 1), tuple(range(1, correlation + 1)), maxl, basis)


def _expand(plan: CGPlan, C: int) -> CGPlan:
    paths = []
    for p in plan.paths:
        rows = [(a * C + c, b * C + c, o * C + c) for a, b, o in zip(p.left, p.right, p.out) for c in range(C)]
        paths.append(Path(p.l1, p.l2, p.l, *(tuple(col) for col in zip(*rows))))
    scale = lambda tau: tuple(C * n for n in tau)  # noqa: E731
    return CGPlan(plan.kind, scale(plan.tau1), scale(plan.tau2), scale(plan.tau_out), plan.maxl, plan.basis,
                  tuple(paths), name=f"{plan.name} x{C} channels")


@lru_cache(maxsize=64)
def channelwise_plans(lmax_in: int, correlation: int, maxl: int, channels: int, basis: str = "complex"):
    """The plans of :func:`contraction_program` expanded over ``channels`` (module docstring)."""
    program = contraction_program(lmax_in, correlation, maxl, basis)
    return tuple(_expand(plan, channels) for plan in program.plans)


def _check(x: torch.Tensor, weights, program: PowerProgram) -> int:
    dim = packed_offsets(program.tau)[1]
    if x.dim() != 2 or x.shape[1] % dim:
        raise ValueError(f"x must be packed (B, C * {dim}) for lmax_in={len(program.tau) - 1}, got {tuple(x.shape)}")
    C = x.shape[1] // dim
    if len(weights) != len(program.degrees):
        raise ValueError(f"need one weight tensor per degree {program.degrees}, got {len(weights)}")
    for j, w in zip(program.degrees, weights):
        n = sum(program.out_type(j))
        if tuple(w.shape) != (x.shape[0], n, C):
            raise ValueError(f"weights of degree {j} must have shape (B, n, C) = {(x.shape[0], n, C)}, "
                             f"got {tuple(w.shape)}")
    return C


@lru_cache(maxsize=64)
def folded_top_plan(lmax_in: int, correlation: int, maxl: int, channels: int, basis: str = "complex"):
    """The top degree with its weights folded in (module docstring): ``(plan, blocks)``.

    ``blocks[i] = (l_prev, left, L, out)`` is path i of the top level of
    :func:`contraction_program` (left fragments of level K-1 part l_prev, output fragments of
    part L). ``plan`` multiplies U (type: per l, C fragments per block with l_prev = l, block-major)
    with x channel by channel and writes one C-fragment group per block into part L."""
    program = contraction_program(lmax_in, correlation, maxl, basis)
    top = program.plans[-1]
    blocks = tuple((p.l1, p.left, p.l, p.out) for p in top.paths)
    C, u_count, out_count, paths = channels, {}, {}, []
    for p in top.paths:
        u, v = u_count.get(p.l1, 0), out_count.get(p.l, 0)
        u_count[p.l1], out_count[p.l] = u + 1, v + 1
        paths.append(Path(p.l1, p.l2, p.l, tuple(u * C + c for c in range(C)), tuple(range(C)),
                          tuple(v * C + c for c in range(C))))
    tau_u = tuple(C * u_count.get(l, 0) for l in range(max(u_count) + 1))
    tau_out = tuple(C * out_count.get(L, 0) for L in range(maxl + 1))
    plan = CGPlan("power", tau_u, tuple(C * n for n in program.tau), tau_out, maxl, basis, tuple(paths),
                  name=f"Sym^{program.top} step, weights folded, x{C} channels")
    return plan, blocks


def _level_part(level: torch.Tensor, tau, l: int, C: int) -> torch.Tensor:
    """Part l of an expanded level as (B, 2l+1, n, C)."""
    start = sum((2 * k + 1) * n * C for k, n in enumerate(tau[:l]))
    return level[:, start:start + (2 * l + 1) * tau[l] * C].reshape(level.shape[0], 2 * l + 1, tau[l], C)


def _folded_top(x, level, w, program: PowerProgram, C: int) -> list[torch.Tensor]:
    """Top-degree contribution per L, (B, 2L+1, C): U_p = Σ_{f in p} w_f left_f, then CG(U_p, x)."""
    plan, blocks = folded_top_plan(len(program.tau) - 1, program.top, program.maxl, C, program.basis)
    tau_prev, first = program.level_type(program.top - 1), _weight_offsets(program.out_type(program.top))
    by_l: dict[int, list[torch.Tensor]] = {}
    for l_prev, left, L, out in blocks:
        part = _level_part(level, tau_prev, l_prev, C)[:, :, list(left)]           # (B, M, |p|, C)
        wp = w[:, [first[L] + o for o in out]]                                      # (B, |p|, C)
        by_l.setdefault(l_prev, []).append(torch.einsum("bmfc,bfc->bmc", part, wp))
    u = torch.cat([torch.stack(by_l[l], 2).reshape(x.shape[0], -1) for l in sorted(by_l)], 1)
    z = cg_product(u, x, plan)
    return [_level_part(z, plan.tau_out, L, 1).reshape(x.shape[0], 2 * L + 1, -1, C).sum(2)
            if plan.tau_out[L] else None for L in range(program.maxl + 1)]


def _weight_offsets(out_type) -> list[int]:
    first = [0]
    for n in out_type:
        first.append(first[-1] + n)
    return first


def symmetric_contraction(x, weights, program: PowerProgram):
    """``B = Σ_ν w^(ν) · Sym^ν(x)`` channel-wise (module docstring). ``x``: SO3vec of type
    (C, ..., C) or packed ``(B, C·dim)``; ``weights[i]``: (B, n_ν, C) for ``ν = program.degrees[i]``.
    Returns the same kind as ``x``: type (C, ..., C) with L = 0..maxl.

    The degrees below the top are read off the expanded levels and mixed by their weights; the
    top degree folds its weights into the level below first (U_p = Σ_f w_f left_f per CG block p)
    and then runs one CG product per block, which never forms the top level's fragments."""
    if isinstance(x, SO3vec):
        C = x.tau[0]
        if set(x.tau) != {C} or len(x.tau) != len(program.tau):
            raise ValueError(f"x must have type {(C,) * len(program.tau)} (C channels per l), got {x.tau}")
        out = symmetric_contraction(x.packed(), weights, program)
        return SO3vec.from_packed(out, (C,) * (program.maxl + 1), basis=x.basis)
    C = _check(x, weights, program)
    B = x.shape[0]
    plans = channelwise_plans(len(program.tau) - 1, program.top, program.maxl, C, program.basis)
    levels = [x]
    for plan in plans[:-1]:
        levels.append(cg_product(levels[-1], x, plan))
    outs: list = [None] * (program.maxl + 1)
    for j, w in zip(program.degrees, weights):
        w = w.to(x.dtype)
        if j == program.top and j > 1:
            terms = _folded_top(x, levels[-1], w, program, C)
        else:
            tau, first = program.level_type(j), _weight_offsets(program.out_type(j))
            terms = [torch.einsum("bmnc,bnc->bmc", _level_part(levels[j - 1], tau, L, C), w[:, first[L]:first[L + 1]])
                     if n else None for L, n in enumerate(program.out_type(j))]
        outs = [o if t is None else t if o is None else o + t for o, t in zip(outs, terms)]
    return torch.cat([(o if o is not None else x.new_zeros(B, 2 * L + 1, C)).reshape(B, -1)
                      for L, o in enumerate(outs)], 1)


class SymmetricContraction(torch.nn.Module):
    """MACE's product basis with per-element weights (module docstring).

    ``forward(x, species)``: ``x`` an SO3vec of type (channels, ..., channels) with l <= lmax_in,
    or its packed form; ``species`` either element indices ``(B,)`` or weights over elements
    ``(B, num_elements)`` (MACE's one-hot ``y``). Weights are real parameters ``weights[ν-1]`` of
    shape (num_elements, n_ν, channels), initialised with variance 1/n_ν.
    """

    def __init__(self, channels: int, lmax_in: int, correlation: int, maxl: int, num_elements: int = 1,
                 basis: str = "complex", dtype: torch.dtype = torch.float32):
        super().__init__()
        self.program = contraction_program(lmax_in, correlation, maxl, basis)
        self.channels, self.num_elements = channels, num_elements
        self.weights = torch.nn.ParameterList()
        for j in self.program.degrees:
            n = sum(self.program.out_type(j))
            self.weights.append(torch.nn.Parameter(torch.randn(num_elements, n, channels, dtype=dtype)
                                                   / math.sqrt(max(n, 1))))

    def sample_weights(self, species: torch.Tensor) -> list[torch.Tensor]:
        """Per-sample weights (B, n_ν, C) from element indices or element weights."""
        if species.dim() == 1 and not species.is_floating_point():
            return [w[species] for w in self.weights]
        if species.dim() == 2 and species.shape[1] == self.num_elements:
            return [torch.einsum("be,enc->bnc", species.to(w.dtype), w) for w in self.weights]
        raise ValueError(f"species must be element indices (B,) or weights (B, {self.num_elements}), "
                         f"got {tuple(species.shape)} of {species.dtype}")

    def forward(self, x, species: torch.Tensor):
        return symmetric_contraction(x, self.sample_weights(species), self.program)
