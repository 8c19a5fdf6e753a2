"""Compile-time choice of a basis of each symmetric-power component (float64, numpy only).

The fragments of degree j are indexed by a *multiset* M = (g_1 <= ... <= g_j) of input fragments
(global ids, ordered by (l, channel)). Products of different multisets involve disjoint monomials,
so they are linearly independent; all linear dependence lives inside one multiset. The span of
the degree-j polynomials in the variables of M is ⊗_d Sym^{n_d}(V_{l_d}) (one factor per distinct
fragment d, taken n_d times), whose multiplicities come from characters
(:func:`so3net.power.characters.multiset_multiplicities`).

Everything about M that matters here is its *pattern*: the sequence ((l_1, t_1), ..., (l_j, t_j))
where t_i numbers the distinct fragments of M in order. For a pattern P with last entry (l_in, t)
and prefix P', the *candidates* at output degree L are the CG products

    CG_{l', l_in -> L}(f, x_t)   for every selected fragment f of (P', l') and every admissible l',

in the order (l' ascending, then f's position). Their span is the whole L-component of the
multiset's polynomials (the product map P' ⊗ V_{l_in} → P is onto and equivariant), and the
number to keep is the character multiplicity r. We evaluate the candidates once on fixed random
complex Gaussian inputs (one per (t, l), float64) and keep r columns chosen by QR with column
pivoting (greedy modified Gram–Schmidt on unit-normalised columns, preferring among well-conditioned
pivots the candidate with the fewest CG terms, so that the program is cheap). The choice is verified:
the r kept columns must be independent (relative pivot > ``INDEPENDENT``) and the rest must lie in
their span (residual < ``DEPENDENT``); anything else raises. Since a linear dependence between
equivariant maps into V_L holds for one m iff it holds for all m, any rows would do; we use all.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..cg import cg_block
from .characters import multiset_multiplicities

__all__ = ["pattern_of", "pattern_multiplicity", "local_basis", "SAMPLES"]

SAMPLES = 48          # random evaluation points per pattern
INDEPENDENT = 1e-6    # smallest relative pivot accepted for a kept column
DEPENDENT = 1e-9      # largest relative residual accepted for a dropped column
GOOD = 0.25           # pivots within this factor of the largest may be chosen for being cheaper


def pattern_of(multiset: tuple[int, ...], degree_of: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Pattern of a sorted multiset of global fragment ids; ``degree_of[g]`` is fragment g's l."""
    pattern, t, previous = [], -1, None
    for g in multiset:
        if g != previous:
            t, previous = t + 1, g
        pattern.append((degree_of[g], t))
    return tuple(pattern)


def _factors(pattern) -> tuple[tuple[int, int], ...]:
    counts: dict[int, list[int]] = {}
    for l, t in pattern:
        counts.setdefault(t, [l, 0])[1] += 1
    return tuple((l, n) for l, n in counts.values())


def pattern_multiplicity(pattern, L: int) -> int:
    """Multiplicity of V_L among the polynomials of a multiset with this pattern."""
    mult = multiset_multiplicities(_factors(pattern))
    return mult[L] if L < len(mult) else 0


@lru_cache(maxsize=None)
def _sample(t: int, l: int) -> np.ndarray:
    rng = np.random.default_rng([20240917, t, l])
    z = rng.standard_normal((SAMPLES, 2 * l + 1)) + 1j * rng.standard_normal((SAMPLES, 2 * l + 1))
    return z / np.sqrt(2.0)


def _pivoted_columns(A: np.ndarray, r: int, cost: np.ndarray, what: str) -> list[int]:
    """Indices (ascending) of ``r`` independent columns of ``A`` spanning its column space.

    Column pivoting with a cost preference: among the columns whose residual norm is at least
    ``GOOD`` times the largest one, the cheapest (then the largest) is taken.
    """
    size = np.linalg.norm(A, axis=0)
    vanishing = size <= DEPENDENT * size.max()   # candidates that are identically zero
    Q = np.where(vanishing, 0.0, A / np.where(vanishing, 1.0, size))
    chosen: list[int] = []
    for _ in range(r):
        norms = np.linalg.norm(Q, axis=0)
        norms[chosen] = -1.0
        good = np.flatnonzero(norms >= GOOD * norms.max())
        p = int(good[np.lexsort((-norms[good], cost[good]))[0]])
        if norms[p] < INDEPENDENT:
            raise RuntimeError(f"{what}: only {len(chosen)} independent candidates, but the character "
                               f"formula gives multiplicity {r}")
        q = Q[:, p] / norms[p]
        Q = Q - np.outer(q, q.conj() @ Q)
        chosen.append(p)
    rest = np.linalg.norm(Q, axis=0)
    rest[chosen] = 0.0
    if rest.size and rest.max() > DEPENDENT:
        raise RuntimeError(f"{what}: candidates span more than the character multiplicity {r} "
                           f"(residual {rest.max():.2e})")
    return sorted(chosen)


@lru_cache(maxsize=None)
def local_basis(pattern: tuple[tuple[int, int], ...], L: int) -> tuple[tuple, np.ndarray]:
    """The kept candidates of (pattern, L) and their values on the fixed random inputs.

    Returns ``(kept, values)``: ``kept[i] = (l_prev, i_prev)`` names the candidate made from
    fragment ``i_prev`` of (prefix pattern, l_prev) times the last input fragment (for a pattern of
    length 1 it is ``(None, 0)``, the input itself); ``values`` has shape (SAMPLES, 2L+1, len(kept)).
    """
    l_in, t_in = pattern[-1]
    if len(pattern) == 1:
        if L != l_in:
            return (), np.zeros((SAMPLES, 2 * L + 1, 0), complex)
        return ((None, 0),), _sample(t_in, l_in)[:, :, None]
    r = pattern_multiplicity(pattern, L)
    if r == 0:
        return (), np.zeros((SAMPLES, 2 * L + 1, 0), complex)
    prefix, x_in = pattern[:-1], _sample(t_in, l_in)
    top = sum(l for l, _ in prefix)
    labels, columns, cost = [], [], []
    for l_prev in range(abs(L - l_in), min(L + l_in, top) + 1):
        kept_prev, values_prev = local_basis(prefix, l_prev)
        if not kept_prev:
            continue
        z = np.einsum("nai,nb,abc->nci", values_prev, x_in, cg_block(l_prev, l_in, L))
        columns.append(z)
        labels += [(l_prev, i) for i in range(len(kept_prev))]
        cost += [np.count_nonzero(cg_block(l_prev, l_in, L))] * len(kept_prev)
    Z = np.concatenate(columns, axis=2)
    chosen = _pivoted_columns(Z.reshape(-1, Z.shape[2]), r, np.asarray(cost), f"pattern {pattern} at L={L}")
    return tuple(labels[c] for c in chosen), Z[:, :, chosen]
