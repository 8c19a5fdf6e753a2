"""Triton kernels of the CG products (launched by :mod:`.triton_ops`; tables of :mod:`.triton_tables`).

One kernel evaluates any plan, fused: a program owns a block of output rows and a block of the
fragments of one *segment* (paths writing the same output fragments), and for every path of the
segment and every output m it sums the path's entries r (a vectorised tile axis), the row map's
entries e and the path's nonzero coefficients t::

    z[row, out_off + m n_l + frag[g]] (+)= sum_r sum_e w * sum_t c_t a[ra, m1_t, left] b[rb, m2_t, right]

The first path of a segment stores, later ones add to the values this program stored (each
output element is owned by one program: no atomics), and no edge-sized intermediate is formed
by the fused message-passing product (``HAS_ROWS``: the rows of output row i are the CSR
entries i of the row map). Complex operands arrive as interleaved real/imaginary planes
(``torch.view_as_real``); ``CONJ_B`` / ``CONJ_OUT`` conjugate the right operand / the result.
Coefficients are read from the plan's tables (never recomputed) with each term's element offsets
``m1 n1`` and ``m2 n2`` (times 2 for complex planes); the loop bounds come from the tables, so one
compiled kernel serves every plan and every l.

The second kernel is the weight gradient ``gw[rw, woff + k] = Re sum_m o(g)[rg, m, out_k] conj(u)``.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_tables import PATH_FIELDS, SEG_FIELDS, TILE_FIELDS, WPATH_FIELDS

__all__ = ["bilinear_kernel", "weight_grad_kernel"]

# Table columns by name (triton_tables.*_FIELDS): row width, then one constant per field.
TILE_W, TILE_OWNER, TILE_FIRST = tl.constexpr(2), tl.constexpr(0), tl.constexpr(1)
SEG_W, SEG_G, SEG_M, SEG_OUT_OFF, SEG_N_L = tl.constexpr(7), tl.constexpr(0), tl.constexpr(1), tl.constexpr(2), tl.constexpr(3)
SEG_PATH_START, SEG_PATH_END, SEG_FRAG_START = tl.constexpr(4), tl.constexpr(5), tl.constexpr(6)
PATH_W, PATH_R, PATH_A_OFF, PATH_B_OFF = tl.constexpr(8), tl.constexpr(0), tl.constexpr(1), tl.constexpr(3)
PATH_TAB_ROW, PATH_W_OFF, PATH_TERM_START = tl.constexpr(5), tl.constexpr(6), tl.constexpr(7)
WPATH_W, WPATH_M, WPATH_OUT_OFF, WPATH_N_L = tl.constexpr(11), tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
WPATH_A_OFF, WPATH_B_OFF, WPATH_K = tl.constexpr(3), tl.constexpr(5), tl.constexpr(7)
WPATH_ENT_START, WPATH_W_OFF, WPATH_TERM_START = tl.constexpr(8), tl.constexpr(9), tl.constexpr(10)


def _check_columns() -> None:
    """The constants above name the columns of triton_tables' row tables (raises on a mismatch)."""
    g = globals()
    for prefix, fields in (("TILE", TILE_FIELDS), ("SEG", SEG_FIELDS), ("PATH", PATH_FIELDS), ("WPATH", WPATH_FIELDS)):
        if g[f"{prefix}_W"].value != len(fields):
            raise AssertionError(f"{prefix} rows have {len(fields)} columns, the kernels read {g[f'{prefix}_W'].value}")
        for i, name in enumerate(fields):
            const = g.get(f"{prefix}_{name.upper()}")
            if const is not None and const.value != i:
                raise AssertionError(f"{prefix}.{name} is column {i}, the kernels read column {const.value}")


_check_columns()


@triton.jit
def bilinear_kernel(
        a_ptr, b_ptr, w_ptr, out_ptr,
        tile_ptr, seg_ptr, frag_ptr, path_ptr, left_ptr, right_ptr, entry_ptr,
        term_ptr_ptr, term_ma_ptr, term_mb_ptr, coef_ptr,
        rowptr_ptr, row_a_ptr, row_b_ptr, row_w_ptr,
        n_rows, stride_a, stride_b, stride_w, stride_out,
        IS_COMPLEX: tl.constexpr, CONJ_B: tl.constexpr, CONJ_OUT: tl.constexpr, HAS_W: tl.constexpr,
        HAS_ROWS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_R: tl.constexpr):
    SCALE = 2 if IS_COMPLEX else 1
    pid_b = tl.program_id(0)
    pid_t = tl.program_id(1)
    seg = tl.load(tile_ptr + TILE_W * pid_t + TILE_OWNER)
    g0 = tl.load(tile_ptr + TILE_W * pid_t + TILE_FIRST)
    G = tl.load(seg_ptr + SEG_W * seg + SEG_G)
    M = tl.load(seg_ptr + SEG_W * seg + SEG_M)
    out_off = tl.load(seg_ptr + SEG_W * seg + SEG_OUT_OFF)
    n_l = tl.load(seg_ptr + SEG_W * seg + SEG_N_L)
    p0 = tl.load(seg_ptr + SEG_W * seg + SEG_PATH_START)
    p1 = tl.load(seg_ptr + SEG_W * seg + SEG_PATH_END)
    f0 = tl.load(seg_ptr + SEG_W * seg + SEG_FRAG_START)

    offs_g = g0 + tl.arange(0, BLOCK_G)
    mask_g = offs_g < G
    offs_r = tl.arange(0, BLOCK_R)
    frag = tl.load(frag_ptr + f0 + offs_g, mask=mask_g, other=0)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = rows < n_rows
    rows64 = rows.to(tl.int64)
    if HAS_ROWS:
        e0 = tl.load(rowptr_ptr + rows, mask=mask_b, other=0)
        deg = tl.load(rowptr_ptr + rows + 1, mask=mask_b, other=0) - e0
        n_e = tl.max(deg, axis=0)
    else:
        n_e = 1
    out_mask = mask_b[:, None] & mask_g[None, :]
    out_rows = out_ptr + rows64[:, None] * stride_out + (out_off + frag)[None, :] * SCALE

    for p in range(p0, p1):
        R = tl.load(path_ptr + PATH_W * p + PATH_R)
        a_off = tl.load(path_ptr + PATH_W * p + PATH_A_OFF)
        b_off = tl.load(path_ptr + PATH_W * p + PATH_B_OFF)
        tab = tl.load(path_ptr + PATH_W * p + PATH_TAB_ROW)
        w_off = tl.load(path_ptr + PATH_W * p + PATH_W_OFF)
        tp = tl.load(path_ptr + PATH_W * p + PATH_TERM_START)
        for r0 in range(0, R, BLOCK_R):
            rr = r0 + offs_r
            ti = tab + offs_g[:, None] * R + rr[None, :]
            ok_t = mask_g[:, None] & (rr < R)[None, :]
            la = tl.load(left_ptr + ti, mask=ok_t, other=-1)
            lb = tl.load(right_ptr + ti, mask=ok_t, other=-1)
            ok_gr = la >= 0
            if HAS_W:
                wcol = w_off + tl.load(entry_ptr + ti, mask=ok_t, other=0)
            if not HAS_ROWS:  # row-wise: operand pointers and weights do not depend on m
                ok = mask_b[:, None, None] & ok_gr[None, :, :]
                pa = a_ptr + rows64[:, None, None] * stride_a + ((a_off + la) * SCALE)[None, :, :]
                pb = b_ptr + rows64[:, None, None] * stride_b + ((b_off + lb) * SCALE)[None, :, :]
                if HAS_W:
                    wv = tl.load(w_ptr + rows64[:, None, None] * stride_w + wcol[None, :, :], mask=ok, other=0.0)
            # the first (path, chunk) of the segment stores, later ones add to what it stored
            accumulate = (p > p0) | (r0 > 0)
            for m in range(M):
                t0 = tl.load(term_ptr_ptr + tp + m)
                t1 = tl.load(term_ptr_ptr + tp + m + 1)
                acc_r = tl.full([BLOCK_B, BLOCK_G, BLOCK_R], 0.0, dtype=out_ptr.dtype.element_ty)
                acc_i = tl.full([BLOCK_B, BLOCK_G, BLOCK_R], 0.0, dtype=out_ptr.dtype.element_ty)
                for e in range(n_e):
                    if HAS_ROWS:
                        ok_b = mask_b & (e < deg)
                        ra = tl.load(row_a_ptr + e0 + e, mask=ok_b, other=0).to(tl.int64)
                        rb = tl.load(row_b_ptr + e0 + e, mask=ok_b, other=0).to(tl.int64)
                        ok = ok_b[:, None, None] & ok_gr[None, :, :]
                        pa = a_ptr + ra[:, None, None] * stride_a + ((a_off + la) * SCALE)[None, :, :]
                        pb = b_ptr + rb[:, None, None] * stride_b + ((b_off + lb) * SCALE)[None, :, :]
                        if HAS_W:
                            rw = tl.load(row_w_ptr + e0 + e, mask=ok_b, other=0).to(tl.int64)
                            wv = tl.load(w_ptr + rw[:, None, None] * stride_w + wcol[None, :, :], mask=ok,
                                         other=0.0)
                    for t in range(t0, t1):
                        c = tl.load(coef_ptr + t)
                        if HAS_W:
                            c = c * wv
                        xa = pa + tl.load(term_ma_ptr + t)
                        yb = pb + tl.load(term_mb_ptr + t)
                        cxr = c * tl.load(xa, mask=ok, other=0.0)
                        yr = tl.load(yb, mask=ok, other=0.0)
                        if IS_COMPLEX:
                            cxi = c * tl.load(xa + 1, mask=ok, other=0.0)
                            yi = tl.load(yb + 1, mask=ok, other=0.0)
                            if CONJ_B:
                                yi = -yi
                            acc_r += cxr * yr - cxi * yi
                            acc_i += cxr * yi + cxi * yr
                        else:
                            acc_r += cxr * yr
                po = out_rows + m * (n_l * SCALE)
                if BLOCK_R == 1:  # sum over the entry axis (a reshape when it has one slot)
                    z_r = tl.reshape(acc_r, [BLOCK_B, BLOCK_G])
                else:
                    z_r = tl.sum(acc_r, axis=2)
                z_r += tl.load(po, mask=out_mask & accumulate, other=0.0)
                tl.store(po, z_r, mask=out_mask)
                if IS_COMPLEX:
                    if BLOCK_R == 1:
                        z_i = tl.reshape(acc_i, [BLOCK_B, BLOCK_G])
                    else:
                        z_i = tl.sum(acc_i, axis=2)
                    if CONJ_OUT:
                        z_i = -z_i
                    z_i += tl.load(po + 1, mask=out_mask & accumulate, other=0.0)
                    tl.store(po + 1, z_i, mask=out_mask)
                tl.debug_barrier()  # what this program stored is read back by its next (path, chunk)


@triton.jit
def weight_grad_kernel(
        g_ptr, a_ptr, b_ptr, gw_ptr,
        tile_ptr, wpath_ptr, ent_left_ptr, ent_right_ptr, ent_out_ptr,
        term_ptr_ptr, term_ma_ptr, term_mb_ptr, coef_ptr,
        row_g_ptr, row_a_ptr, row_b_ptr, row_w_ptr,
        n_rows, stride_g, stride_a, stride_b, stride_w,
        IS_COMPLEX: tl.constexpr, CONJ_B: tl.constexpr, CONJ_G: tl.constexpr, GATHER: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    SCALE = 2 if IS_COMPLEX else 1
    pid_b = tl.program_id(0)
    pid_t = tl.program_id(1)
    p = tl.load(tile_ptr + TILE_W * pid_t + TILE_OWNER)
    k0 = tl.load(tile_ptr + TILE_W * pid_t + TILE_FIRST)
    M = tl.load(wpath_ptr + WPATH_W * p + WPATH_M)
    out_off = tl.load(wpath_ptr + WPATH_W * p + WPATH_OUT_OFF)
    n_l = tl.load(wpath_ptr + WPATH_W * p + WPATH_N_L)
    a_off = tl.load(wpath_ptr + WPATH_W * p + WPATH_A_OFF)     # n1, n2 are folded into term_ma/mb
    b_off = tl.load(wpath_ptr + WPATH_W * p + WPATH_B_OFF)
    K = tl.load(wpath_ptr + WPATH_W * p + WPATH_K)
    ent = tl.load(wpath_ptr + WPATH_W * p + WPATH_ENT_START)
    w_off = tl.load(wpath_ptr + WPATH_W * p + WPATH_W_OFF)
    tp = tl.load(wpath_ptr + WPATH_W * p + WPATH_TERM_START)

    offs_k = k0 + tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    la = tl.load(ent_left_ptr + ent + offs_k, mask=mask_k, other=0)
    lb = tl.load(ent_right_ptr + ent + offs_k, mask=mask_k, other=0)
    lo = tl.load(ent_out_ptr + ent + offs_k, mask=mask_k, other=0)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = rows < n_rows
    if GATHER:
        rg = tl.load(row_g_ptr + rows, mask=mask_b, other=0).to(tl.int64)
        ra = tl.load(row_a_ptr + rows, mask=mask_b, other=0).to(tl.int64)
        rb = tl.load(row_b_ptr + rows, mask=mask_b, other=0).to(tl.int64)
        rw = tl.load(row_w_ptr + rows, mask=mask_b, other=0).to(tl.int64)
    else:
        rg = rows.to(tl.int64)
        ra = rg
        rb = rg
        rw = rg
    ok = mask_b[:, None] & mask_k[None, :]
    pa = a_ptr + ra[:, None] * stride_a + ((a_off + la) * SCALE)[None, :]
    pb = b_ptr + rb[:, None] * stride_b + ((b_off + lb) * SCALE)[None, :]
    pg = g_ptr + rg[:, None] * stride_g + ((out_off + lo) * SCALE)[None, :]
    acc = tl.full([BLOCK_B, BLOCK_K], 0.0, dtype=gw_ptr.dtype.element_ty)
    for m in range(M):
        s_r = tl.full([BLOCK_B, BLOCK_K], 0.0, dtype=gw_ptr.dtype.element_ty)
        s_i = tl.full([BLOCK_B, BLOCK_K], 0.0, dtype=gw_ptr.dtype.element_ty)
        for t in range(tl.load(term_ptr_ptr + tp + m), tl.load(term_ptr_ptr + tp + m + 1)):
            c = tl.load(coef_ptr + t)
            xa = pa + tl.load(term_ma_ptr + t)
            yb = pb + tl.load(term_mb_ptr + t)
            cxr = c * tl.load(xa, mask=ok, other=0.0)
            yr = tl.load(yb, mask=ok, other=0.0)
            if IS_COMPLEX:
                cxi = c * tl.load(xa + 1, mask=ok, other=0.0)
                yi = tl.load(yb + 1, mask=ok, other=0.0)
                if CONJ_B:
                    yi = -yi
                s_r += cxr * yr - cxi * yi
                s_i += cxr * yi + cxi * yr
            else:
                s_r += cxr * yr
        gm = pg + m * (n_l * SCALE)
        acc += tl.load(gm, mask=ok, other=0.0) * s_r
        if IS_COMPLEX:
            gi = tl.load(gm + 1, mask=ok, other=0.0)
            if CONJ_G:
                gi = -gi
            acc += gi * s_i
    pw = gw_ptr + rw[:, None] * stride_w + (w_off + offs_k)[None, :]
    if GATHER:
        tl.atomic_add(pw, acc, mask=ok)
    else:
        tl.store(pw, acc, mask=ok)
