"""Compiled CG product plans (the talk's ``TPprogram``): frozen, hashable, cached per signature.

A plan describes a bilinear product of two packed SO(3)-vectors ``x`` (type ``tau1``) and ``y``
(type ``tau2``) into ``z`` (type ``tau_out``) as a list of *paths*. Path ``p`` reads part ``l1`` of
x and part ``l2`` of y and writes part ``l`` of z::

    z^l[m, out[k]] += sum_{m1 + m2 = m} C[m1, m2, m] * x^{l1}[m1, left[k]] * y^{l2}[m2, right[k]]

for k = 0..K-1. ``C`` is the path's coefficient block: the CG block ⟨l1 m1; l2 m2 | l m⟩ in the
complex basis (the real-basis block in the real basis). Forward plans write each output fragment
once; the backward plans of a forward plan have the same form (with ``out`` indices that repeat,
meaning accumulation) and read ``conj`` of the other operand.

Packed layout (shared with the kernels): a vector of type tau over batch B is a tensor (B, dim)
where part l occupies ``[offset(l), offset(l) + (2l+1) * tau[l])`` stored row-major as
``(2l+1, tau[l])`` — i.e. the SO3part layout ``(2l+1, n)`` flattened.

Kinds and output fragment order (part l; blocks (l1, l2) in lexicographic order):
- ``full``: all pairs (i, j), fragment ``i * n2 + j`` inside the block (GElib's order);
- ``diag``: pairs (i, i); needs n1 == n2 per block, or one side with one fragment (broadcast);
- ``square``: x with itself, blocks l1 <= l2 only; for l1 < l2 all (i, j); for l1 == l2 the
  unordered pairs i <= j when l1 + l2 - l is even and i < j when it is odd (the i == j fragment
  vanishes identically then). This is exactly Sym²: no fragment is computed twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from .cg import cg_block

__all__ = ["Path", "CGPlan", "cg_plan", "packed_offsets", "KINDS", "BASES"]

KINDS = ("full", "diag", "square")
BASES = ("complex", "real")


def packed_offsets(tau: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """Offsets of each part in the packed layout, and the total dimension."""
    offsets, total = [], 0
    for l, n in enumerate(tau):
        offsets.append(total)
        total += (2 * l + 1) * n
    return tuple(offsets), total


def coefficient_block(l1: int, l2: int, l: int, basis: str) -> np.ndarray:
    """The coefficient block of a path in the given basis (float64 or complex128 array)."""
    if basis == "complex":
        return cg_block(l1, l2, l)
    from .basis import real_cg_block  # the real basis tables live with the basis change
    return real_cg_block(l1, l2, l)


@dataclass(frozen=True)
class Path:
    """One (l1, l2) -> l block: fragment maps ``left``, ``right``, ``out`` (tuples of ints)."""
    l1: int
    l2: int
    l: int
    left: tuple[int, ...]
    right: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.out)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray(self.left, dtype=np.int64), np.asarray(self.right, dtype=np.int64),
                np.asarray(self.out, dtype=np.int64))


@dataclass(frozen=True)
class CGPlan:
    """A compiled bilinear product program; see the module docstring for the semantics.

    ``conj_right`` marks plans that read ``conj(y)`` (backward plans of complex products);
    ``coef_perm`` gives the axis order (of (m1, m2, m) of the forward CG block) that maps to this
    plan's (left, right, out) axes.
    """
    kind: str
    tau1: tuple[int, ...]
    tau2: tuple[int, ...]
    tau_out: tuple[int, ...]
    maxl: int
    basis: str
    paths: tuple[Path, ...]
    conj_right: bool = False
    coef_perm: tuple[int, int, int] = (0, 1, 2)
    name: str = field(default="", compare=False)

    # ------------------------------------------------------------- layout
    @cached_property
    def offsets1(self) -> tuple[int, ...]:
        return packed_offsets(self.tau1)[0]

    @cached_property
    def offsets2(self) -> tuple[int, ...]:
        return packed_offsets(self.tau2)[0]

    @cached_property
    def offsets_out(self) -> tuple[int, ...]:
        return packed_offsets(self.tau_out)[0]

    @property
    def dim1(self) -> int:
        return packed_offsets(self.tau1)[1]

    @property
    def dim2(self) -> int:
        return packed_offsets(self.tau2)[1]

    @property
    def dim_out(self) -> int:
        return packed_offsets(self.tau_out)[1]

    def coefficients(self, path: Path) -> np.ndarray:
        """The path's block indexed [m_left, m_right, m_out] (m + l offsets)."""
        f = self._forward_ls(path)
        return np.transpose(coefficient_block(*f, self.basis), self.coef_perm)

    def _forward_ls(self, path: Path) -> tuple[int, int, int]:
        ls = [None, None, None]
        for axis, l in zip(self.coef_perm, (path.l1, path.l2, path.l)):
            ls[axis] = l
        return tuple(ls)

    # ------------------------------------------------------------- cost model
    def nnz(self, path: Path) -> int:
        """Number of nonzero (m1, m2, m) terms of the path's block."""
        return int(np.count_nonzero(self.coefficients(path)))

    def flops(self, batch: int = 1) -> int:
        """Real floating-point operations: per nonzero term and fragment, a complex
        multiply-accumulate of x*y scaled by a real coefficient costs 8 (complex basis) and 3 in
        the real basis."""
        per_term = 8 if self.basis == "complex" else 3
        return batch * per_term * sum(self.nnz(p) * p.size for p in self.paths)

    def bytes(self, batch: int = 1, itemsize: int = 8) -> int:
        """Compulsory memory traffic: read x and y once, write z once. ``itemsize`` is the size of
        one scalar element (8 for complex64, 16 for complex128, 4 for float32)."""
        return batch * itemsize * (self.dim1 + self.dim2 + self.dim_out)

    # ------------------------------------------------------------- backward
    @cached_property
    def backward_plans(self) -> tuple["CGPlan", "CGPlan"]:
        """Plans of the gradients: ``gx = P_x(gz, conj y)`` and ``gy = P_y(gz, conj x)``
        (``conj`` applies in the complex basis; real tables are real and conj is the identity)."""
        gx_paths = tuple(Path(p.l, p.l2, p.l1, p.out, p.right, p.left) for p in self.paths)
        gy_paths = tuple(Path(p.l, p.l1, p.l2, p.out, p.left, p.right) for p in self.paths)
        gx = CGPlan("grad", self.tau_out, self.tau2, self.tau1, len(self.tau1) - 1, self.basis,
                    gx_paths, conj_right=True, coef_perm=_compose(self.coef_perm, (2, 1, 0)),
                    name=f"d/dx {self.name or self.kind}")
        gy = CGPlan("grad", self.tau_out, self.tau1, self.tau2, len(self.tau2) - 1, self.basis,
                    gy_paths, conj_right=True, coef_perm=_compose(self.coef_perm, (2, 0, 1)),
                    name=f"d/dy {self.name or self.kind}")
        return gx, gy

    # ------------------------------------------------------------- listing
    def listing(self) -> str:
        """A readable program listing in the spirit of the talk's TPprogram printout."""
        head = (f"CGPlan {self.name or self.kind}: {_fmt(self.tau1)} x {_fmt(self.tau2)} -> "
                f"{_fmt(self.tau_out)}  (maxl={self.maxl}, basis={self.basis}, "
                f"{len(self.paths)} paths, {self.flops()} flops/sample, {self.bytes()} bytes/sample)")
        rows = [head]
        for p in self.paths:
            outs = f"[{min(p.out)}..{max(p.out)}]" if p.out else "[]"
            rows.append(f"  ({p.l1},{p.l2})->{p.l}: {p.size:5d} fragments -> part {p.l} {outs}, "
                        f"{self.nnz(p)} CG terms")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.listing()


def _compose(first: tuple[int, int, int], then: tuple[int, int, int]) -> tuple[int, int, int]:
    """Axis order after transposing by ``first`` then by ``then``."""
    return tuple(first[i] for i in then)


def _fmt(tau) -> str:
    return "(" + ",".join(str(n) for n in tau) + ")"


def _block_pairs(kind: str, l1: int, l2: int, l: int, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "full":
        return np.repeat(np.arange(n1), n2), np.tile(np.arange(n2), n1)
    if kind == "diag":
        if n1 != n2 and 1 not in (n1, n2):
            raise ValueError(f"diag product needs equal fragment counts per block (or one side with 1 "
                             f"fragment to broadcast), got n1={n1} at l1={l1} and n2={n2} at l2={l2}")
        n = max(n1, n2)
        return (np.arange(n) if n1 == n else np.zeros(n, int)), (np.arange(n) if n2 == n else np.zeros(n, int))
    # square
    if l1 < l2:
        return np.repeat(np.arange(n1), n2), np.tile(np.arange(n2), n1)
    i, j = np.triu_indices(n1, k=0 if (l1 + l2 - l) % 2 == 0 else 1)
    return i, j


@lru_cache(maxsize=None)
def cg_plan(tau1: tuple[int, ...], tau2: tuple[int, ...], maxl: int | None = None, kind: str = "full",
            basis: str = "complex") -> CGPlan:
    """The cached plan of a product of types ``tau1`` and ``tau2`` (tuples of fragment counts).

    ``maxl=None`` keeps every l up to l1max + l2max. For ``kind="square"``, tau2 must equal tau1.
    """
    tau1, tau2 = tuple(int(n) for n in tau1), tuple(int(n) for n in tau2)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    if any(n < 0 for n in tau1 + tau2):
        raise ValueError(f"fragment counts must be >= 0, got {tau1} and {tau2}")
    if kind == "square" and tau1 != tau2:
        raise ValueError(f"square product needs tau2 == tau1, got {tau1} and {tau2}")
    top = (len(tau1) - 1) + (len(tau2) - 1)
    maxl = top if maxl is None else int(maxl)
    if maxl < 0:
        raise ValueError(f"maxl must be >= 0, got {maxl}")
    counts = [0] * (min(maxl, top) + 1)
    paths = []
    for l1, n1 in enumerate(tau1):
        for l2, n2 in enumerate(tau2):
            if n1 == 0 or n2 == 0 or (kind == "square" and l1 > l2):
                continue
            for l in range(abs(l1 - l2), min(l1 + l2, maxl) + 1):
                left, right = _block_pairs(kind, l1, l2, l, n1, n2)
                if len(left) == 0:
                    continue
                out = np.arange(counts[l], counts[l] + len(left))
                counts[l] += len(left)
                paths.append(Path(l1, l2, l, tuple(left.tolist()), tuple(right.tolist()), tuple(out.tolist())))
    while len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    return CGPlan(kind, tau1, tau2, tuple(counts), maxl, basis, tuple(paths), name=kind)
