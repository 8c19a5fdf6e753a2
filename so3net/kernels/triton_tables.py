"""Plan tables for the Triton kernels: flat int32 / float arrays built once per plan (numpy).

Layout (all row-major, int32 unless noted), from :attr:`CGPlan.segments`, :attr:`CGPlan.path_groups`
and :attr:`CGPlan.path_terms`:

Row tables have named columns (``SEG_FIELDS``, ``PATH_FIELDS``, ``WPATH_FIELDS``, ``TILE_FIELDS``;
rows are built by name and the kernels read them through constants checked against these names):

- ``seg (S, 7)``: per segment ``[G, M = 2l+1, offset of part l in the packed output, n_l,
  first path, end path, first fragment in frag]``; ``frag (sum G,)`` its output fragments;
- ``path (P, 8)``: per path, in segment order, ``[R, offset of part l1 in a, n1, offset of part l2
  in b, n2, first row in the (G_seg, R) tables, weight offset, first entry in term_ptr]``;
- ``left``, ``right``, ``entry``: the path's (G_seg, R) operand fragments and entry indices
  aligned with its segment's fragments, -1 where it has no entry;
- ``term_ptr``: per path, M + 1 pointers into ``term_ma``, ``term_mb``, ``coef`` (float64): the
  nonzero terms of output m are ``term_ptr[m] .. term_ptr[m + 1]``; ``term_ma = m1 * n1`` and
  ``term_mb = m2 * n2`` are the terms' element offsets inside their parts (the launchers multiply
  the tables by 2 for interleaved complex planes);
- ``wpath (P, 11)``: per path in plan order ``[M, out offset, n_l, a offset, n1, b offset, n2,
  K, first entry in ent_*, weight offset, first entry in term_ptr]`` and ``ent_left``,
  ``ent_right``, ``ent_out``: the raw entries (for the weight gradient kernel).

Tiles split each segment (or path, for the weight gradient) into blocks of fragments.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..plan import CGPlan

__all__ = ["KernelTables", "kernel_tables", "tiles", "SEG_FIELDS", "PATH_FIELDS", "WPATH_FIELDS", "TILE_FIELDS"]

# The columns of the row tables, by name (the kernels read them through constants checked against these).
SEG_FIELDS = ("G", "M", "out_off", "n_l", "path_start", "path_end", "frag_start")
PATH_FIELDS = ("R", "a_off", "n1", "b_off", "n2", "tab_row", "w_off", "term_start")
WPATH_FIELDS = ("M", "out_off", "n_l", "a_off", "n1", "b_off", "n2", "K", "ent_start", "w_off", "term_start")
TILE_FIELDS = ("owner", "first")          # tiles: segment (or path) and first fragment (or entry)


def _row(fields: tuple[str, ...], **values) -> list[int]:
    """One table row with its columns in the order of ``fields`` (every field given once)."""
    if set(values) != set(fields):
        raise ValueError(f"table row needs exactly the fields {fields}, got {sorted(values)}")
    return [int(values[f]) for f in fields]


@dataclass(frozen=True, eq=False)
class KernelTables:
    seg: np.ndarray
    frag: np.ndarray
    path: np.ndarray
    left: np.ndarray
    right: np.ndarray
    entry: np.ndarray
    term_ptr: np.ndarray
    term_ma: np.ndarray
    term_mb: np.ndarray
    coef: np.ndarray
    wpath: np.ndarray
    ent_left: np.ndarray
    ent_right: np.ndarray
    ent_out: np.ndarray


def _i32(values) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1)).astype(np.int32)


@lru_cache(maxsize=1024)
def kernel_tables(plan: CGPlan) -> KernelTables:
    """The tables of ``plan`` (see the module docstring)."""
    ptrs, ma, mb, coef, base = [], [], [], [], 0
    for i, p in enumerate(plan.paths):
        a, b, m, c = plan.path_terms[i]
        ptrs.append(base + np.searchsorted(m, np.arange(2 * p.l + 2)))
        ma.append(a * plan.tau1[p.l1]), mb.append(b * plan.tau2[p.l2]), coef.append(c)
        base += len(c)
    starts = np.cumsum([0] + [len(x) for x in ptrs])
    seg_rows, frags, path_rows, lefts, rights, entries, tab = [], [], [], [], [], [], 0
    for s in plan.segments:
        out = np.asarray(s.out, dtype=np.int64)
        seg_rows.append(_row(SEG_FIELDS, G=len(out), M=2 * s.l + 1, out_off=plan.offsets_out[s.l],
                             n_l=plan.tau_out[s.l], path_start=len(path_rows),
                             path_end=len(path_rows) + len(s.paths), frag_start=sum(len(f) for f in frags)))
        frags.append(out)
        for i in s.paths:
            p = plan.paths[i]
            g_out, left, right, entry = plan.path_groups[i]
            R = left.shape[1]
            rows = np.searchsorted(out, g_out)
            tables = [np.full((len(out), R), -1, dtype=np.int64) for _ in range(3)]
            for t, values in zip(tables, (left, right, entry)):
                t[rows] = values
            lefts.append(tables[0]), rights.append(tables[1]), entries.append(tables[2])
            path_rows.append(_row(PATH_FIELDS, R=R, a_off=plan.offsets1[p.l1], n1=plan.tau1[p.l1],
                                  b_off=plan.offsets2[p.l2], n2=plan.tau2[p.l2], tab_row=tab,
                                  w_off=plan.weight_offsets[i], term_start=starts[i]))
            tab += len(out) * R
    wrows, ent, off = [], [[], [], []], 0
    for i, p in enumerate(plan.paths):
        wrows.append(_row(WPATH_FIELDS, M=2 * p.l + 1, out_off=plan.offsets_out[p.l], n_l=plan.tau_out[p.l],
                          a_off=plan.offsets1[p.l1], n1=plan.tau1[p.l1], b_off=plan.offsets2[p.l2],
                          n2=plan.tau2[p.l2], K=p.size, ent_start=off, w_off=plan.weight_offsets[i],
                          term_start=starts[i]))
        for store, values in zip(ent, (p.left, p.right, p.out)):
            store.append(values)
        off += p.size
    cat = lambda xs: np.concatenate([np.asarray(x).reshape(-1) for x in xs]) if xs else np.zeros(0)  # noqa: E731
    return KernelTables(
        seg=_i32(seg_rows), frag=_i32(cat(frags)), path=_i32(path_rows), left=_i32(cat(lefts)),
        right=_i32(cat(rights)), entry=_i32(cat(entries)), term_ptr=_i32(cat(ptrs)), term_ma=_i32(cat(ma)),
        term_mb=_i32(cat(mb)), coef=np.ascontiguousarray(cat(coef), dtype=np.float64), wpath=_i32(wrows),
        ent_left=_i32(cat(ent[0])), ent_right=_i32(cat(ent[1])), ent_out=_i32(cat(ent[2])))


@lru_cache(maxsize=1024)
def tiles(plan: CGPlan, block: int, by: str) -> np.ndarray:
    """``(T, 2)`` int32 tiles ``[segment or path, first fragment]`` covering every segment
    (``by="segment"``) or every path's entries (``by="path"``) in blocks of ``block``."""
    sizes = [len(s.out) for s in plan.segments] if by == "segment" else [p.size for p in plan.paths]
    out = [_row(TILE_FIELDS, owner=i, first=g) for i, n in enumerate(sizes) for g in range(0, n, block)]
    return _i32(out).reshape(-1, 2)
