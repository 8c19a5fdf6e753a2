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

__all__ = ["bilinear_kernel", "weight_grad_kernel"]


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
    seg = tl.load(tile_ptr + 2 * pid_t)
    g0 = tl.load(tile_ptr + 2 * pid_t + 1)
    G = tl.load(seg_ptr + 7 * seg)
    M = tl.load(seg_ptr + 7 * seg + 1)
    out_off = tl.load(seg_ptr + 7 * seg + 2)
    n_l = tl.load(seg_ptr + 7 * seg + 3)
    p0 = tl.load(seg_ptr + 7 * seg + 4)
    p1 = tl.load(seg_ptr + 7 * seg + 5)
    f0 = tl.load(seg_ptr + 7 * seg + 6)

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
        R = tl.load(path_ptr + 8 * p)
        a_off = tl.load(path_ptr + 8 * p + 1)
        b_off = tl.load(path_ptr + 8 * p + 3)
        tab = tl.load(path_ptr + 8 * p + 5)
        w_off = tl.load(path_ptr + 8 * p + 6)
        tp = tl.load(path_ptr + 8 * p + 7)
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
    p = tl.load(tile_ptr + 2 * pid_t)
    k0 = tl.load(tile_ptr + 2 * pid_t + 1)
    M = tl.load(wpath_ptr + 11 * p)
    out_off = tl.load(wpath_ptr + 11 * p + 1)
    n_l = tl.load(wpath_ptr + 11 * p + 2)
    a_off = tl.load(wpath_ptr + 11 * p + 3)     # columns 4 and 6 (n1, n2) are folded into term_ma/mb
    b_off = tl.load(wpath_ptr + 11 * p + 5)
    K = tl.load(wpath_ptr + 11 * p + 7)
    ent = tl.load(wpath_ptr + 11 * p + 8)
    w_off = tl.load(wpath_ptr + 11 * p + 9)
    tp = tl.load(wpath_ptr + 11 * p + 10)

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
