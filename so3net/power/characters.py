"""Characters of SO(3) representations and the irreducible content of symmetric powers.

A representation V of SO(3) is determined up to isomorphism by its character on the class of
rotations by angle θ. With q = e^{iθ}, the irreducible V_l has character

    χ_l(θ) = Σ_{m=-l..l} e^{imθ} = Σ_m q^m,

so every character is a Laurent polynomial in q with integer coefficients, symmetric under
q ↦ 1/q. The multiplicity of V_L in a representation with character Σ_m c_m q^m is
``c_L - c_{L+1}`` (the q^L coefficient minus the q^{L+1} one), which is the Weyl-integral
``(1/π) ∫_0^{2π} χ(θ) χ_L(θ) sin²(θ/2) dθ`` evaluated exactly.

Symmetric powers (Newton's identity on class angles). If χ is the character of V, then the
rotation g^j has class angle jθ, so the power sums are ``p_j(θ) = χ(jθ)`` (q ↦ q^j), and the
character h_k of Sym^k(V) satisfies

    h_0 = 1,    h_k(θ) = (1/k) Σ_{j=1..k} p_j(θ) h_{k-j}(θ).

For example Sym²: h_2 = (χ(θ)² + χ(2θ)) / 2. All arithmetic here is exact integer arithmetic on
the Laurent coefficients (the division by k is exact).

A type τ (tuple of fragment counts per l) denotes V = ⊕_l τ_l V_l.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["Character", "irrep_character", "type_character", "sym_power_character",
           "sym_power_multiplicities", "multiset_multiplicities"]


class Character:
    """An integer Laurent polynomial Σ_m c_m q^m in q = e^{iθ}, stored as ``coef[m + shift]``."""

    __slots__ = ("coef", "shift")

    def __init__(self, coef, shift: int):
        self.coef = np.asarray(coef, dtype=np.int64)
        self.shift = int(shift)

    @classmethod
    def one(cls) -> "Character":
        return cls([1], 0)

    def __add__(self, other: "Character") -> "Character":
        shift = max(self.shift, other.shift)
        top = max(len(self.coef) - self.shift, len(other.coef) - other.shift)
        coef = np.zeros(shift + top, dtype=np.int64)
        for c in (self, other):
            coef[shift - c.shift: shift - c.shift + len(c.coef)] += c.coef
        return Character(coef, shift)

    def __mul__(self, other) -> "Character":
        if isinstance(other, (int, np.integer)):
            return Character(self.coef * int(other), self.shift)
        return Character(np.convolve(self.coef, other.coef), self.shift + other.shift)

    __rmul__ = __mul__

    def exact_div(self, k: int) -> "Character":
        if np.any(self.coef % k):
            raise ArithmeticError(f"character coefficients are not divisible by {k}")
        return Character(self.coef // k, self.shift)

    def at_power(self, j: int) -> "Character":
        """The character of the same representation at g^j (q ↦ q^j)."""
        coef = np.zeros(j * (len(self.coef) - 1) + 1, dtype=np.int64)
        coef[::j] = self.coef
        return Character(coef, j * self.shift)

    def coefficient(self, m: int) -> int:
        i = m + self.shift
        return int(self.coef[i]) if 0 <= i < len(self.coef) else 0

    def multiplicity(self, L: int) -> int:
        """Multiplicity of the irreducible V_L (``c_L - c_{L+1}``)."""
        return self.coefficient(L) - self.coefficient(L + 1)

    def decompose(self) -> tuple[int, ...]:
        """Multiplicities of V_0, V_1, ... (trailing zeros trimmed; at least one entry)."""
        top = len(self.coef) - 1 - self.shift
        mult = [self.multiplicity(L) for L in range(max(top, 0) + 1)]
        while len(mult) > 1 and mult[-1] == 0:
            mult.pop()
        return tuple(mult)

    def value(self, theta: np.ndarray) -> np.ndarray:
        """Numerical value χ(θ) on class angles θ."""
        m = np.arange(len(self.coef)) - self.shift
        return (self.coef * np.cos(np.multiply.outer(np.asarray(theta, dtype=float), m))).sum(-1)


@lru_cache(maxsize=None)
def irrep_character(l: int) -> Character:
    """χ_l = Σ_{m=-l..l} q^m."""
    return Character(np.ones(2 * l + 1, dtype=np.int64), l)


def type_character(tau) -> Character:
    """Character of V = ⊕_l tau[l] V_l."""
    total = Character([0], 0)
    for l, n in enumerate(tau):
        if n:
            total = total + irrep_character(l) * int(n)
    return total


def sym_power_character(chi: Character, k: int) -> Character:
    """Character of Sym^k(V) from the character χ of V by Newton's identity (module docstring)."""
    if k < 0:
        raise ValueError(f"the symmetric power needs k >= 0, got {k}")
    h = [Character.one()]
    for n in range(1, k + 1):
        acc = Character([0], 0)
        for j in range(1, n + 1):
            acc = acc + chi.at_power(j) * h[n - j]
        h.append(acc.exact_div(n))
    return h[k]


@lru_cache(maxsize=None)
def sym_power_multiplicities(tau: tuple[int, ...], k: int, maxl: int | None = None) -> tuple[int, ...]:
    """Multiplicity of each V_L (L = 0..maxl) in Sym^k(⊕_l tau[l] V_l)."""
    mult = sym_power_character(type_character(tau), k).decompose()
    if maxl is None:
        return mult
    return tuple(mult[L] if L < len(mult) else 0 for L in range(maxl + 1))


@lru_cache(maxsize=None)
def multiset_multiplicities(factors: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """Multiplicities of the V_L in ⊗_i Sym^{n_i}(V_{l_i}) for ``factors = ((l_i, n_i), ...)``.

    This is the space spanned by the monomials of one multiset of input fragments: a fragment
    of degree l_i taken n_i times contributes Sym^{n_i}(V_{l_i}).
    """
    total = Character.one()
    for l, n in factors:
        total = total * sym_power_character(irrep_character(l), n)
    return total.decompose()
