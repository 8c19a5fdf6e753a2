"""Compiled symmetric tensor power programs (the talk's ``SPprogram``), cached per signature.

``power_program(tau, degrees, maxl)`` compiles the irreducible decomposition of Sym^j(V) for
every j in ``degrees`` (V of type tau) into a chain of CG products, each a :class:`so3net.plan.CGPlan`
executed by the kernels:

    level 1 = v,     level j = CG(level j-1, v)   for j = 2..K  (K = max(degrees)).

Level j holds degree-j fragments, each indexed by a multiset M = (g_1 <= ... <= g_j) of input
fragments (global ids ordered by (l, channel)); fragment (M, L) is made from a level-(j-1)
fragment of M minus its last element times the input fragment g_j. So every unordered fragment
combination is formed once (never (i, j) and (j, i)), Sym^j reuses the Sym^(j-1) intermediates,
and of the candidate couplings only a basis is kept, chosen once at compile time in float64
(:mod:`so3net.power.select`): the output holds each V_L exactly as often as Sym^j(V) contains it
(:mod:`so3net.power.characters`), and its fragments are linearly independent. Intermediates are
pruned to what later levels or the outputs use, and capped at l <= maxl + (K-j)·lmax.

Layout. Levels are packed like any SO(3)-vector (:mod:`so3net.plan`). Part L of level j lists
its fragments by block (l_prev, l_in) in lexicographic order, then by (left fragment, right
fragment). For j in ``degrees`` level j holds every fragment of Sym^j at L <= maxl, so the packed
output of degree j is the prefix ``level_j[:, :dim(out_type(j))]``. This order does not depend on
which other degrees are compiled alongside.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import combinations_with_replacement

import torch

from ..plan import BASES, CGPlan, Path, cg_plan, packed_offsets
from .characters import sym_power_multiplicities
from .select import local_basis, pattern_of

__all__ = ["PowerProgram", "power_program"]


@dataclass(frozen=True)
class PowerProgram:
    """A compiled symmetric power program; see the module docstring.

    ``plans[j-2]`` computes level j from level j-1 and the input. ``multisets[j-1][L]`` lists the
    multiset (tuple of global input fragment ids) of every fragment of part L of level j, and
    ``fragment_l[g]`` is the degree l of input fragment g.
    """
    tau: tuple[int, ...]
    degrees: tuple[int, ...]
    maxl: int
    basis: str
    plans: tuple[CGPlan, ...]
    multisets: tuple[tuple[tuple[tuple[int, ...], ...], ...], ...]
    fragment_l: tuple[int, ...]

    @property
    def top(self) -> int:
        return max(self.degrees)

    def level_type(self, j: int) -> tuple[int, ...]:
        return self.tau if j == 1 else self.plans[j - 2].tau_out

    def out_type(self, j: int) -> tuple[int, ...]:
        """The type of the degree-j output: Sym^j multiplicities for L = 0..maxl."""
        if j not in self.degrees:
            raise ValueError(f"degree {j} was not compiled; this program has degrees {self.degrees}")
        level = self.level_type(j)
        return tuple(level[L] if L < len(level) else 0 for L in range(self.maxl + 1))

    # ------------------------------------------------------------------ execution
    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All levels ``[v, level 2, ..., level K]`` for packed ``x (B, dim(tau))``, evaluated by the
        kernels (the backend chosen by :mod:`so3net.kernels.dispatch`) through the torch bridge
        :func:`so3net.graph.bridge.cg_product`, so they are differentiable to any order and the
        backward of each step is the pair of CG products of its backward plans."""
        from ..graph.bridge import cg_product
        levels = [x]
        for plan in self.plans:
            levels.append(cg_product(levels[-1], x, plan))
        return levels

    def output(self, levels: list[torch.Tensor], j: int) -> torch.Tensor:
        """The packed degree-j output ``(B, dim(out_type(j)))`` from :meth:`levels`."""
        dim = packed_offsets(self.out_type(j))[1]
        return levels[j - 1][:, :dim]

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Packed outputs, one per compiled degree (in the order of ``degrees``)."""
        levels = self.levels(x)
        return [self.output(levels, j) for j in self.degrees]

    # ------------------------------------------------------------------ cost model
    def flops(self, batch: int = 1) -> int:
        """Real floating-point operations of all CG steps (see :meth:`CGPlan.flops`)."""
        return sum(plan.flops(batch) for plan in self.plans)

    @cached_property
    def naive_plans(self) -> tuple[CGPlan, ...]:
        """The naive program: repeated full CGproduct ``((v ⊗ v) ⊗ v) ...`` over ordered pairs,
        with the same l caps as this program (the cheapest naive chain that yields the outputs)."""
        plans, current = [], self.tau
        for j in range(2, self.top + 1):
            plan = cg_plan(current, self.tau, _cap(j, self.top, self.maxl, self.lmax_in), "full", self.basis)
            plans.append(plan)
            current = plan.tau_out
        return tuple(plans)

    def naive_flops(self, batch: int = 1) -> int:
        return sum(plan.flops(batch) for plan in self.naive_plans)

    @property
    def lmax_in(self) -> int:
        return max(l for l, n in enumerate(self.tau) if n)

    # ------------------------------------------------------------------ listing
    def listing(self, fragments: bool = False) -> str:
        """A readable listing in the spirit of the talk's ``SPprogram TensorPower3``."""
        from .listing import program_listing
        return program_listing(self, fragments)

    def __str__(self) -> str:
        return self.listing()


def _cap(j: int, top: int, maxl: int, lmax: int) -> int:
    """Largest l of level j that can still reach an output l <= maxl at level ``top``."""
    return min(j * lmax, maxl + (top - j) * lmax)


def _normalise(tau, degrees, maxl, basis) -> tuple[tuple[int, ...], tuple[int, ...], int, str]:
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    tau = tuple(int(n) for n in tau)
    if not tau or any(n < 0 for n in tau) or sum(tau) == 0:
        raise ValueError(f"tau must be fragment counts per l (>= 0, not all 0), got {tau}")
    degrees = tuple(sorted({int(j) for j in degrees}))
    if not degrees or degrees[0] < 1:
        raise ValueError(f"degrees must be integers >= 1, got {degrees}")
    lmax = max(l for l, n in enumerate(tau) if n)
    maxl = degrees[-1] * lmax if maxl is None else int(maxl)
    if maxl < 0:
        raise ValueError(f"maxl must be >= 0, got {maxl}")
    return tau, degrees, maxl, basis


def power_program(tau, degrees=(2,), maxl: int | None = None, basis: str = "complex") -> PowerProgram:
    """The program of Sym^j(V) for j in ``degrees`` (V of type tau), parts L <= maxl; compiled
    once per normalised signature (tau, degrees, maxl, basis) and cached.

    ``maxl=None`` keeps everything (max(degrees) · lmax). See the module docstring.
    """
    return _compile(*_normalise(tau, degrees, maxl, basis))


@lru_cache(maxsize=None)
def _compile(tau, degrees, maxl, basis) -> PowerProgram:
    fragment_l = tuple(l for l, n in enumerate(tau) for _ in range(n))
    channel = tuple(c for n in tau for c in range(n))
    required = _required_fragments(fragment_l, degrees, maxl)
    positions: dict = {(g,): {(l, 0): c} for g, (l, c) in enumerate(zip(fragment_l, channel))}
    plans, multisets = [], [_input_multisets(fragment_l, tau)]
    level_tau = tau
    for j in range(2, degrees[-1] + 1):
        width = maxl + 1 if j in degrees else 0
        plan, level_multisets = _level_plan(j, required[j], fragment_l, channel, positions, level_tau, tau,
                                            width, basis)
        plans.append(plan)
        multisets.append(level_multisets)
        level_tau = plan.tau_out
    return PowerProgram(tau, degrees, maxl, basis, tuple(plans), tuple(multisets), fragment_l)


def _input_multisets(fragment_l, tau):
    return tuple(tuple((g,) for g, l in enumerate(fragment_l) if l == L) for L in range(len(tau)))


def _required_fragments(fragment_l, degrees, maxl) -> dict[int, dict]:
    """``required[j][(M, L)]``: indices (into ``local_basis(pattern(M), L)``) of the level-j
    fragments needed by the outputs or by level j+1."""
    top = degrees[-1]
    lmax = max(fragment_l)
    required: dict[int, dict] = {j: {} for j in range(1, top + 1)}
    for j in degrees:
        for M in combinations_with_replacement(range(len(fragment_l)), j):
            pattern = pattern_of(M, fragment_l)
            for L in range(min(maxl, sum(fragment_l[g] for g in M)) + 1):
                kept, _ = local_basis(pattern, L)
                if kept:
                    required[j].setdefault((M, L), set()).update(range(len(kept)))
    for j in range(top, 1, -1):
        cap = _cap(j - 1, top, maxl, lmax)
        for (M, L), indices in required[j].items():
            kept, _ = local_basis(pattern_of(M, fragment_l), L)
            for i in indices:
                l_prev, i_prev = kept[i]
                if l_prev > cap:
                    raise AssertionError(f"fragment of degree {j - 1} at l={l_prev} above the cap {cap}")
                required[j - 1].setdefault((M[:-1], l_prev), set()).add(i_prev)
    return required


def _level_plan(j, required, fragment_l, channel, positions, prev_tau, tau, width, basis):
    """The CGPlan of level j and the multisets of its fragments; fills ``positions`` for level j.
    The output type has at least ``width`` entries (zero counts included)."""
    entries = []
    for (M, L), indices in required.items():
        kept, _ = local_basis(pattern_of(M, fragment_l), L)
        g = M[-1]
        for i in sorted(indices):
            l_prev, i_prev = kept[i]
            left = positions[M[:-1]][(l_prev, i_prev)]
            entries.append((L, l_prev, fragment_l[g], left, channel[g], M, i))
    entries.sort()
    counts: dict[int, int] = {}
    blocks: dict[tuple[int, int, int], list] = {}
    level_multisets: dict[int, list] = {}
    for L, l_prev, l_in, left, c, M, i in entries:
        out = counts.get(L, 0)
        counts[L] = out + 1
        positions.setdefault(M, {})[(L, i)] = out
        blocks.setdefault((l_prev, l_in, L), []).append((left, c, out))
        level_multisets.setdefault(L, []).append(M)
    top_l = max(max(counts) if counts else 0, width - 1)
    tau_out = tuple(counts.get(L, 0) for L in range(top_l + 1))
    paths = tuple(Path(l1, l2, L, *(tuple(col) for col in zip(*rows)))
                  for (l1, l2, L), rows in sorted(blocks.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])))
    plan = CGPlan("power", tuple(prev_tau), tuple(tau), tau_out, top_l, basis, paths, name=f"Sym^{j} step")
    return plan, tuple(tuple(level_multisets.get(L, ())) for L in range(top_l + 1))
