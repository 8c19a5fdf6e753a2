"""``SO3type`` (τ): the fragment counts of an SO(3)-vector, one per degree l = 0..L.

A type is an immutable, hashable tuple of non-negative integers: ``tau[l]`` is the number of
fragments (channels) of the part of degree l; a zero count means the part is absent. It compares
equal to the plain tuple with the same entries and prints like GElib::

    >>> tau = SO3type((2, 3, 1))
    >>> print(tau)
    (2,3,1)
    >>> tau[1], tau.maxl, tau.dim
    (3, 2, 16)
    >>> SO3type((1, 1)).CGproduct(SO3type((1, 1)))
    SO3type((2,3,1))

The product types come from the compiled plans (:func:`so3net.plan.cg_plan`), so a type computed
here is exactly the type of the tensor the product returns. ``+`` is the direct sum (fragment
counts add, the shorter type padded with zeros), not tuple concatenation.
"""
from __future__ import annotations

import numbers

from ..plan import cg_plan

__all__ = ["SO3type"]


class SO3type(tuple):
    """Fragment counts per degree l (see the module docstring)."""

    def __new__(cls, counts=()):
        if isinstance(counts, SO3type):
            return counts
        if isinstance(counts, (str, bytes, dict, set, frozenset)) or not hasattr(counts, "__iter__"):
            raise TypeError(f"SO3type expects a sequence of fragment counts per l, e.g. (2, 3, 1); "
                            f"got {counts!r}")
        values = tuple(counts)
        for l, n in enumerate(values):
            if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
                raise ValueError(f"SO3type expects non-negative integer fragment counts; got {n!r} at "
                                 f"l={l} in {values!r}")
        if not values:
            raise ValueError("SO3type needs at least one entry (the count for l=0)")
        return super().__new__(cls, (int(n) for n in values))

    # ----------------------------------------------------------------- basic properties
    @property
    def maxl(self) -> int:
        """The largest degree l stored (``len(tau) - 1``), absent or not."""
        return len(self) - 1

    @property
    def dim(self) -> int:
        """Complex (or real) dimension of one sample: ``sum_l (2l+1) tau[l]``."""
        return sum((2 * l + 1) * n for l, n in enumerate(self))

    def trimmed(self) -> "SO3type":
        """The same type without trailing zero counts (at least one entry is kept)."""
        values = list(self)
        while len(values) > 1 and values[-1] == 0:
            values.pop()
        return SO3type(values)

    def count(self, l: int) -> int:
        """Fragments of degree ``l`` (0 beyond ``maxl``)."""
        return self[l] if 0 <= l < len(self) else 0

    # ----------------------------------------------------------------- algebra
    def __add__(self, other) -> "SO3type":
        """Direct sum: counts add, l by l."""
        other = SO3type(other)
        size = max(len(self), len(other))
        return SO3type(self.count(l) + other.count(l) for l in range(size))

    __radd__ = __add__

    def __mul__(self, k) -> "SO3type":
        """``k * tau``: the direct sum of ``k`` copies."""
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 0:
            return NotImplemented
        return SO3type(k * n for n in self)

    __rmul__ = __mul__

    def CGproduct(self, other, maxl: int | None = None) -> "SO3type":
        """Type of the full CG product ``CGproduct(x, y, maxl)`` with x of this type, y of ``other``."""
        return _product_type(self, SO3type(other), maxl, "full")

    def DiagCGproduct(self, other, maxl: int | None = None) -> "SO3type":
        """Type of the diagonal product; ``other`` must equal this type (trailing zeros aside) and,
        since fragment i of every part meets fragment i of every part, its nonzero counts must agree."""
        other = SO3type(other)
        if self.trimmed() != other.trimmed():
            raise ValueError(f"DiagCGproduct pairs fragment i with fragment i, so it needs two equal types; "
                             f"got {self} and {other}")
        return _product_type(self, other, maxl, "diag")

    def CGsquare(self, maxl: int | None = None) -> "SO3type":
        """Type of the symmetric square ``CGsquare(x, maxl)``: unordered fragment pairs only."""
        return _product_type(self, self, maxl, "square")

    # ----------------------------------------------------------------- printing
    def __str__(self) -> str:
        return "(" + ",".join(str(n) for n in self) + ")"

    def __repr__(self) -> str:
        return f"SO3type({self})"

    def __getnewargs__(self):
        return (tuple(self),)


def check_maxl(maxl) -> int | None:
    """Validate a ``maxl`` argument (None or a non-negative integer)."""
    if maxl is None:
        return None
    if not isinstance(maxl, numbers.Integral) or isinstance(maxl, bool) or maxl < 0:
        raise ValueError(f"maxl must be None or a non-negative integer, got {maxl!r}")
    return int(maxl)


def _product_type(tau1: SO3type, tau2: SO3type, maxl, kind: str) -> SO3type:
    try:
        plan = cg_plan(tuple(tau1), tuple(tau2), check_maxl(maxl), kind)
    except ValueError as err:  # the plan names the offending block
        raise ValueError(f"{kind} product of types {tau1} and {tau2}: {err}") from None
    return SO3type(plan.tau_out)
