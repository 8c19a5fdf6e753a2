"""The tables of the compiled CG kernels: which plans they take and how their terms are laid out.

:func:`tables` returns :class:`Tables` (``full_cg.c``) for plans whose paths are row-matrices --
full products of any types (an (n1, n2) block per output row), the symmetric square (its l1 = l2
blocks are row-major triangles) and the forward-like second-order plan -- and :class:`ZipTables`
(``zip_cg.c``) for channel-wise plans (fragment i with fragment i, a one-fragment side
broadcasting); ``None`` for anything else. Offsets count elements (complex numbers for complex
data); coefficients are real in both bases and kept in float32 and float64.
"""
from __future__ import annotations

import ctypes

import numpy as np
import torch

__all__ = ["Tables", "ZipTables", "tables", "FIXED_N2", "GENERIC", "SUFFIX"]

FIXED_N2 = (4, 8, 16, 32)               # channel counts of y with an unrolled variant
GENERIC = (32, 16)                      # vector bytes of the variants for rows of varying n2
SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_COUNTS = ("J", "dim1", "dim2", "dim_out", "n2max", "G", "H")
_ARRAYS = ("rn1", "rn2", "ooff", "rtri", "qrow", "qy", "so", "qterm", "qx", "prow", "px", "wo", "pterm", "py")


class _Tables(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in _COUNTS] + [(name, ctypes.c_void_p) for name in _ARRAYS]


_ZIP_ARRAYS = ("rn", "ooff", "bx", "by", "zterm", "xo", "yo")


class _ZipTables(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("J", "dim1", "dim2", "dim_out")] + \
               [(name, ctypes.c_void_p) for name in _ZIP_ARRAYS]


def _size(n1: int, n2: int, tri: int) -> int:
    """Entries of a row-matrix: a full (n1, n2) block (tri = -1) or the triangle c2 >= c1 + tri."""
    return n1 * n2 if tri < 0 else max(0, n1 - tri) * (n1 - tri + 1) // 2


def _block(p, n1: int, n2: int) -> tuple[int, int] | None:
    """The output block of a non-empty path ``p`` as ``(first out index, tri)`` by its connection
    (:attr:`so3net.plan.Path.connection`): ``tri = -1`` for a full (n1, n2) block, 0 / 1 for the
    row-major upper triangle ``triu_indices(n, k)`` of an "upper" / "strict_upper" path (the
    symmetric square's l1 = l2 blocks); ``None`` for anything else or other fragment counts. A
    channel-wise path with a one-fragment side is the full block of that side."""
    if (p.connection == "full" or (p.connection == "channelwise" and 1 in (n1, n2))) and p.size == n1 * n2:
        return int(p.out[0]), -1
    k = {"upper": 0, "strict_upper": 1}.get(p.connection)
    if k is not None and n1 == n2 and p.size == _size(n1, n2, k):
        return int(p.out[0]), k
    return None


def _covering(rows: list, size, dim_out: int) -> list | None:
    """``rows`` (offset first) in packed order if their ``size(row)`` entries cover ``dim_out``
    exactly once, else ``None``."""
    rows = sorted(rows, key=lambda r: r[0])
    end = 0
    for row in rows:
        if row[0] != end:
            return None
        end += size(row)
    return rows if end == dim_out else None


def _rows(plan) -> list | None:
    """Per output row-matrix ``(offset, n1, n2, terms, tri)`` with terms ``(x-row offset, y-row
    offset, coefficient)`` (nonzero, merged), in packed order; ``None`` unless every path of
    ``plan`` is a full block or a triangle (:func:`_block`: full products, the symmetric square
    and their backward plans) and the rows cover the output once."""
    if plan.coef_perm != (0, 1, 2) or not plan.paths:
        return None
    rows = []
    for p, (m1, m2, m, c) in zip(plan.paths, plan.path_terms):
        if not p.out:
            continue
        n1, n2 = plan.tau1[p.l1], plan.tau2[p.l2]
        block = _block(p, n1, n2)
        if block is None:
            return None
        out, tri = block
        width = plan.tau_out[p.l]
        for row in range(2 * p.l + 1):
            sel = m == row
            merged: dict = {}
            for a, b, v in zip(m1[sel].tolist(), m2[sel].tolist(), c[sel].tolist()):
                key = (plan.offsets1[p.l1] + a * n1, plan.offsets2[p.l2] + b * n2)
                merged[key] = merged.get(key, 0.0) + v
            terms = [(xo, yo, v) for (xo, yo), v in sorted(merged.items()) if v != 0.0]
            rows.append((plan.offsets_out[p.l] + row * width + out, n1, n2, terms, tri))
    rows = [r for r in rows if _size(r[1], r[2], r[4])]
    return _covering(rows, lambda r: _size(r[1], r[2], r[4]), plan.dim_out)


def _groups(rows: list, key: int, length: int):
    """The terms of each row grouped by ``t[key]`` (0: x-row offset, 1: y-row offset): row starts,
    each group's offset, its scratch offset (prefix sums of the row's ``length`` entry: n1 or n2),
    term starts, the other offset of each term, coefficients."""
    row_start, group, scratch, term_start, other, coef = [0], [], [0], [0], [], []
    for row in rows:
        terms = row[3]
        for value in sorted({t[key] for t in terms}):
            group.append(value)
            scratch.append(scratch[-1] + row[length])
            for t in terms:
                if t[key] == value:
                    other.append(t[1 - key])
                    coef.append(t[2])
            term_start.append(len(other))
        row_start.append(len(group))
    return [np.ascontiguousarray(v, dtype=np.int64) for v in (row_start, group, scratch, term_start, other)], coef


class Tables:
    """The nonzero CG terms of a full product (:func:`_rows`), grouped per output row by y row
    (q-groups) and by x row (p-groups), as the int64 arrays of ``full_cg.c`` and coefficients in
    float32 and float64; ``n2s``: the channel counts of its rows (:meth:`variant`)."""

    kernel = "full_cg"

    def __init__(self, plan, rows: list):
        (qrow, qy, so, qterm, qx), qc = _groups(rows, 1, 1)
        (prow, px, wo, pterm, py), pc = _groups(rows, 0, 2)
        i64 = lambda v: np.ascontiguousarray(v, dtype=np.int64)  # noqa: E731
        arrays = dict(rn1=i64([r[1] for r in rows]), rn2=i64([r[2] for r in rows]), ooff=i64([r[0] for r in rows]),
                      rtri=i64([r[4] for r in rows]), qrow=qrow, qy=qy, so=so, qterm=qterm, qx=qx,
                      prow=prow, px=px, wo=wo, pterm=pterm, py=py)
        self._keep = arrays                                  # the struct points into these arrays
        self.dim1, self.dim2, self.dim_out = plan.dim1, plan.dim2, plan.dim_out
        self.n2s = frozenset(r[2] for r in rows)
        counts = dict(J=len(rows), dim1=plan.dim1, dim2=plan.dim2, dim_out=plan.dim_out,
                      n2max=max(r[2] for r in rows), G=len(qy), H=len(px))
        self.struct = _Tables(*(counts[n] for n in _COUNTS), *(arrays[n].ctypes.data for n in _ARRAYS))
        self._coef = {dt: (torch.as_tensor(qc, dtype=dt), torch.as_tensor(pc, dtype=dt)) for dt in SUFFIX}

    def variant(self, dtype: torch.dtype) -> str:
        """The compiled variant for ``dtype``: unrolled when every row has the same n2 in
        ``FIXED_N2``; else 32-byte vectors when they tile every row, else 16-byte ones."""
        if len(self.n2s) == 1 and min(self.n2s) in FIXED_N2:
            return f"n{min(self.n2s)}"
        real = dtype.to_real() if dtype.is_complex else dtype
        row_bytes = [n * real.itemsize * (2 if dtype.is_complex else 1) for n in self.n2s]
        return "any32" if all(b % 32 == 0 for b in row_bytes) else "any16"


def _zip_rows(plan) -> list | None:
    """Per output row ``(offset, n, bx, by, terms)`` of a channel-wise plan (every path pairs
    fragment i with fragment i, a one-fragment side broadcasting: bx or by = 0), terms ``(x-row
    offset, y-row offset, coefficient)``; ``None`` for other plans or if the rows do not cover the
    output exactly once."""
    if plan.coef_perm != (0, 1, 2) or not plan.paths:
        return None
    rows = []
    for p, (m1, m2, m, c) in zip(plan.paths, plan.path_terms):
        n1, n2, n = plan.tau1[p.l1], plan.tau2[p.l2], p.size
        if not n:
            continue
        if p.connection != "channelwise" and not (p.connection == "full" and 1 in (n1, n2)):
            return None                  # a full block with a one-fragment side is channel-wise (broadcast)
        steps = []
        for index, count in ((p.left, n1), (p.right, n2)):   # fragments 0..n-1, or fragment 0 of a one-fragment side
            if index[-1] == n - 1 and n <= count:
                steps.append(1)
            elif count == 1 and index[-1] == 0:
                steps.append(0)
            else:
                return None
        width = plan.tau_out[p.l]
        for row in range(2 * p.l + 1):
            sel = m == row
            terms = [(plan.offsets1[p.l1] + a * n1, plan.offsets2[p.l2] + b * n2, v)
                     for a, b, v in zip(m1[sel].tolist(), m2[sel].tolist(), c[sel].tolist()) if v != 0.0]
            rows.append((plan.offsets_out[p.l] + row * width + int(p.out[0]), n, *steps, terms))
    return _covering(rows, lambda r: r[1], plan.dim_out)


class ZipTables:
    """The nonzero CG terms of a channel-wise product (:func:`_zip_rows`) as the arrays of
    ``zip_cg.c``, with coefficients in float32 and float64."""

    kernel = "zip_cg"

    def __init__(self, plan, rows: list):
        i64 = lambda v: np.ascontiguousarray(v, dtype=np.int64)  # noqa: E731
        terms = [t for r in rows for t in r[4]]
        arrays = dict(rn=i64([r[1] for r in rows]), ooff=i64([r[0] for r in rows]), bx=i64([r[2] for r in rows]),
                      by=i64([r[3] for r in rows]), zterm=i64(np.cumsum([0] + [len(r[4]) for r in rows])),
                      xo=i64([t[0] for t in terms]), yo=i64([t[1] for t in terms]))
        self._keep = arrays                                  # the struct points into these arrays
        self.dim1, self.dim2, self.dim_out = plan.dim1, plan.dim2, plan.dim_out
        self.struct = _ZipTables(len(rows), plan.dim1, plan.dim2, plan.dim_out,
                                 *(arrays[n].ctypes.data for n in _ZIP_ARRAYS))
        coef = [t[2] for t in terms]
        self._coef = {dt: (torch.as_tensor(coef, dtype=dt),) * 2 for dt in SUFFIX}

    def variant(self, dtype: torch.dtype) -> None:
        return None


def tables(plan) -> Tables | ZipTables | None:
    """The kernels' tables of a forward plan: :class:`Tables` for full products and the symmetric
    square (:func:`_rows`), :class:`ZipTables` for channel-wise products (:func:`_zip_rows`), else
    ``None``."""
    rows = _rows(plan)
    if rows:
        return Tables(plan, rows)
    rows = _zip_rows(plan)
    return ZipTables(plan, rows) if rows else None
