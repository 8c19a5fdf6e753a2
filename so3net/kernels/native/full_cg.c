/* Full CG product (every fragment pair of every path) and both input gradients on the CPU, real and
 * complex dtypes, any operand types.
 *
 * Compiled on first use by so3net/kernels/native/__init__.py, which builds the tables; the driver
 * it writes includes this file once per (REAL, SUFFIX) = (float, f32) / (double, f64) and VARIANT:
 * FIXED_N2 = 4, 8, 16, 32 (every row has n2 = FIXED_N2: channel loops unrolled), or n2 read per row
 * with 32-byte ("any32") or 16-byte ("any16") vectors.
 *
 * The packed output is a sequence of J row-matrices: row j (part l, row m, block (l1, l2)) is an
 * (n1_j, n2_j) matrix at element offset ooff[j], or, for the symmetric square's l1 = l2 blocks,
 * the row-major upper triangle c2 >= c1 + k of one (k = rtri[j] = 0 or 1; -1 for a full block);
 * x row p (part l1, row m1) holds n1 entries and y row q holds n2. Per sample, with G the output
 * or its gradient (entries (c1, c2) outside a triangle left out of every sum):
 *
 *   Z[j][c1, :]   = sum_{q-groups g of row j} S[g][c1] * Y[q_g][:]
 *   gY[q_g][:]   += sum_c1 S[g][c1] * G[j][c1, :]            (every q-group g of every row j)
 *   gX[p_h][c1]  += <W[h][:], G[j][c1, :]>                    (every p-group h of every row j)
 *
 * with S[g] = sum_{terms t of q-group g} c_t X[p_t] and W[h] = sum_{terms t of p-group h} c_t Y[q_t]
 * (combine(), once per sample). Only nonzero CG terms are read; the terms of a row that share
 * their y row (q-group) or x row (p-group) are merged. Complex data is interleaved (re, im); the
 * coefficients are real; the complex products are written as lane products (see the complex
 * kernels). The channel loops run on GCC vectors (the widest of 64, 32, 16 bytes that tiles a fixed
 * row; 32 or 16 bytes for rows of varying n2, the rest of a row in scalars);
 * samples are split over OpenMP threads. Each function returns 0, or 1 when a thread could not
 * allocate its scratch (the outputs are then incomplete and the caller raises).
 */
#ifndef SO3NET_FULL_TABLES
#define SO3NET_FULL_TABLES
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef int64_t idx;
/* Offsets count elements (complex numbers for complex data). Row j: rn1[j], rn2[j], ooff[j], rtri[j];
 * its q-groups [qrow[j], qrow[j+1]): y-row offset qy[g], S at so[g] (so[G] = total), terms
 * [qterm[g], qterm[g+1]) with x-row offsets qx[t] (coefficients qc, in the dtype); its p-groups
 * [prow[j], prow[j+1]): x-row offset px[h], W at wo[h] (wo[H] = total), terms [pterm[h],
 * pterm[h+1]) with y-row offsets py[t] (coefficients pc). n2max: the largest rn2. */
typedef struct {
    idx J, dim1, dim2, dim_out, n2max, G, H;
    const idx *rn1, *rn2, *ooff, *rtri;
    const idx *qrow, *qy, *so, *qterm, *qx;
    const idx *prow, *px, *wo, *pterm, *py;
} Tables;
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define NAME(f) CAT(CAT(f, SUFFIX), VARIANT)
/* Fragment c1 of a row with triangle offset k (-1: full block) covers columns [TRI_START, n2); its
 * column c is element TRI_BASE + c of the row-matrix. */
/* A thread without its scratch marks the call failed (and skips its samples). */
#define FLAG_FAILURE(ok, failed) do { if (!(ok)) { _Pragma("omp atomic write") (failed) = 1; } } while (0)
/* The layout of Tables and ZipTables (checked by the loader against its ctypes structures). */
#define SO3NET_NATIVE_ABI 3
int so3net_native_abi(void) { return SO3NET_NATIVE_ABI; }
#define TRI_START(k, c1) ((k) < 0 ? 0 : (c1) + (k))
#define TRI_BASE(k, c1, n2) ((k) < 0 ? (c1) * (n2) : (c1) * (n2) - (c1) * ((c1) - 1) / 2 - (c1) * (k) - (c1) - (k))
#endif

#if defined(__AVX512F__)                /* the widest vector the compiler targets: wider GCC vectors are */
#define VMAXBYTES 64                    /* lowered piecewise through memory (3.6x slower on an AVX2 Zen 2) */
#elif defined(__AVX__)
#define VMAXBYTES 32
#else
#define VMAXBYTES 16
#endif
#if defined(FIXED_N2)                   /* the widest vector (up to VMAXBYTES) that tiles a row */
#define VBYTES ((FIXED_N2 * sizeof(REAL)) % VMAXBYTES == 0 ? VMAXBYTES : (FIXED_N2 * sizeof(REAL)) % 32 == 0 ? 32 : 16)
#define ROW_N2(j) ((idx)FIXED_N2)
#define N2MAX ((idx)FIXED_N2)
#else                                   /* rows of varying n2: GENERIC_VBYTES (32, or 16 for narrow rows) */
#define VBYTES (GENERIC_VBYTES < VMAXBYTES ? GENERIC_VBYTES : VMAXBYTES)
#define ROW_N2(j) (T->rn2[j])
#define N2MAX (T->n2max)
#endif
typedef REAL NAME(vec) __attribute__((vector_size(VBYTES), aligned(sizeof(REAL)), may_alias));
#define VEC NAME(vec)
#define VW ((idx)(VBYTES / sizeof(REAL)))
#define LOADV(p) (*(const VEC *)(p))
#define STOREV(p, v) (*(VEC *)(p) = (v))
typedef REAL NAME(hvec) __attribute__((vector_size(16), aligned(sizeof(REAL)), may_alias));
#define HVEC NAME(hvec)                  /* 16-byte vectors: the short rows of triangles, row ends */
#define HW ((idx)(16 / sizeof(REAL)))
#define LOADH(p) (*(const HVEC *)(p))
#define STOREH(p, v) (*(HVEC *)(p) = (v))

/* dst[dst_off[k] ..] = sum_{t in [start[k], start[k+1])} coef[t] src[src_off[t] ..] for each group k,
 * dst_off[k+1] - dst_off[k] elements of k_reals reals each (1: real data, 2: complex). */
static void NAME(combine)(idx groups, const idx *restrict start, const idx *restrict src_off,
                          const REAL *restrict coef, const REAL *restrict src, const idx *restrict dst_off,
                          REAL *restrict dst, idx k_reals)
{
    for (idx k = 0; k < groups; ++k) {
        REAL *restrict d = dst + k_reals * dst_off[k];
        const idx len = k_reals * (dst_off[k + 1] - dst_off[k]);
        for (idx c = 0; c < len; ++c) d[c] = 0;
        for (idx t = start[k]; t < start[k + 1]; ++t) {
            const REAL w = coef[t];
            const REAL *restrict r = src + k_reals * src_off[t];
            for (idx c = 0; c < len; ++c) d[c] += w * r[c];
        }
    }
}

int NAME(full_cg_forward)(const Tables *T, const REAL *qc, idx B, const REAL *x, const REAL *y, REAL *out,
                          int threads)
{
    int failed = 0;                      /* set by a thread whose scratch could not be allocated */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->so[T->G] + 1));
        const int ok = S != NULL;
        FLAG_FAILURE(ok, failed);
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *yb = y + b * T->dim2;
            REAL *ob = out + b * T->dim_out;
            NAME(combine)(T->G, T->qterm, T->qx, qc, x + b * T->dim1, T->so, S, 1);
            for (idx j = 0; j < T->J; ++j) {
                const idx n1 = T->rn1[j], n2 = ROW_N2(j), k = T->rtri[j];
                const idx g0 = T->qrow[j], g1 = T->qrow[j + 1];
                for (idx c1 = 0; c1 < n1; ++c1) {
                    REAL *o = ob + T->ooff[j] + TRI_BASE(k, c1, n2);
                    idx c = TRI_START(k, c1);
                    for (; c + VW <= n2; c += VW) {
                        VEC acc = {0};
                        for (idx g = g0; g < g1; ++g) acc += S[T->so[g] + c1] * LOADV(yb + T->qy[g] + c);
                        STOREV(o + c, acc);
                    }
                    for (; c + HW <= n2; c += HW) {
                        HVEC acc = {0};
                        for (idx g = g0; g < g1; ++g) acc += S[T->so[g] + c1] * LOADH(yb + T->qy[g] + c);
                        STOREH(o + c, acc);
                    }
                    for (; c < n2; ++c) {
                        REAL acc = 0;
                        for (idx g = g0; g < g1; ++g) acc += S[T->so[g] + c1] * yb[T->qy[g] + c];
                        o[c] = acc;
                    }
                }
            }
        }
        free(S);
    }
    return failed;
}

/* gx (B, dim1) and/or gy (B, dim2); either may be NULL (then y, resp. x, may be NULL too). */
int NAME(full_cg_backward)(const Tables *T, const REAL *qc, const REAL *pc, idx B, const REAL *gz, const REAL *x,
                           const REAL *y, REAL *gx, REAL *gy, int threads)
{
    const idx nm = N2MAX;                /* row stride of acc: one x entry's lanes */
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->so[T->G] + 1));
        REAL *W = (REAL *)malloc(sizeof(REAL) * (size_t)(T->wo[T->H] + 1));
        REAL *acc = (REAL *)malloc(sizeof(REAL) * (size_t)(T->dim1 * nm + 1));
        const int ok = S && W && acc;
        FLAG_FAILURE(ok, failed);
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *gb = gz + b * T->dim_out;
            REAL *gyb = gy ? gy + b * T->dim2 : NULL;
            if (gy) {
                NAME(combine)(T->G, T->qterm, T->qx, qc, x + b * T->dim1, T->so, S, 1);
                memset(gyb, 0, sizeof(REAL) * (size_t)T->dim2);
            }
            if (gx) {
                NAME(combine)(T->H, T->pterm, T->py, pc, y + b * T->dim2, T->wo, W, 1);
                memset(acc, 0, sizeof(REAL) * (size_t)(T->dim1 * nm));
            }
            for (idx j = 0; j < T->J; ++j) {
                const idx n1 = T->rn1[j], n2 = ROW_N2(j), nt = n2 / VW * VW, k = T->rtri[j];
                const REAL *gj = gb + T->ooff[j];
                if (gy)                     /* gY[q] += sum_c1 S[g][c1] G[j][c1, :], summed in registers */
                    for (idx g = T->qrow[j]; g < T->qrow[j + 1]; ++g) {
                        const REAL *s = S + T->so[g];
                        REAL *a = gyb + T->qy[g];
                        if (k >= 0) {               /* a triangle: chunks of HW columns, summed in registers */
                            for (idx c0 = 0; c0 < n2; c0 += HW) {
                                const idx end = c0 + HW <= n2 ? c0 + HW : n2;
                                idx c1 = 0;         /* fragments with c1 + k <= c0 cover the whole chunk */
                                if (end - c0 == HW) {
                                    HVEC sum = LOADH(a + c0);
                                    for (; c1 < n1 && c1 + k <= c0; ++c1)
                                        sum += s[c1] * LOADH(gj + TRI_BASE(k, c1, n2) + c0);
                                    STOREH(a + c0, sum);
                                }
                                for (; c1 < n1 && c1 + k < end; ++c1) {  /* the rest: from column c1 + k */
                                    const REAL *grow = gj + TRI_BASE(k, c1, n2);
                                    for (idx c = c1 + k > c0 ? c1 + k : c0; c < end; ++c) a[c] += s[c1] * grow[c];
                                }
                            }
                            continue;
                        }
                        for (idx c = 0; c < nt; c += VW) {
                            VEC sum = LOADV(a + c);
                            for (idx c1 = 0; c1 < n1; ++c1) sum += s[c1] * LOADV(gj + c1 * n2 + c);
                            STOREV(a + c, sum);
                        }
                        for (idx c = nt; c < n2; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) a[c] += s[c1] * gj[c1 * n2 + c];
                    }
                if (gx)                     /* acc[p + c1][:] += W[h][:] * G[j][c1, :] */
                    for (idx h = T->prow[j]; h < T->prow[j + 1]; ++h) {
                        const REAL *w = W + T->wo[h];
                        REAL *a = acc + T->px[h] * nm;
                        if (k >= 0) {
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                const REAL *grow = gj + TRI_BASE(k, c1, n2);
                                REAL *arow = a + c1 * nm;
                                idx c = TRI_START(k, c1);
                                for (; c + HW <= n2; c += HW)
                                    STOREH(arow + c, LOADH(arow + c) + LOADH(w + c) * LOADH(grow + c));
                                for (; c < n2; ++c) arow[c] += w[c] * grow[c];
                            }
                            continue;
                        }
                        for (idx c = 0; c < nt; c += VW) {
                            const VEC wv = LOADV(w + c);
                            for (idx c1 = 0; c1 < n1; ++c1)
                                STOREV(a + c1 * nm + c, LOADV(a + c1 * nm + c) + wv * LOADV(gj + c1 * n2 + c));
                        }
                        for (idx c = nt; c < n2; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) a[c1 * nm + c] += w[c] * gj[c1 * n2 + c];
                    }
            }
            if (gx) {
                REAL *dst = gx + b * T->dim1;
                for (idx e = 0; e < T->dim1; ++e) {
                    REAL sum = 0;
                    for (idx c = 0; c < nm; ++c) sum += acc[e * nm + c];
                    dst[e] = sum;
                }
            }
        }
        free(S);
        free(W);
        free(acc);
    }
    return failed;
}

/* Complex data (every offset doubles: 2 reals per element). With s = S[g][c1] = sr + i si and, per
 * sample, Ys = i Y (interleaved: -Im, Re):
 *   Z[j][c1, :] = sum_g sr Y[q_g] + si Ys[q_g]
 *   gY[q]       = A[q] + i B[q],         A[q] += sr G[j][c1, :], B[q] += si G[j][c1, :] (real sums)
 *   gX[p][c1]   = sum (even - odd lanes of A[p + c1]) + i sum (lanes of B[p + c1]),
 *                 A[p + c1] += W[h] * G[j][c1, :], B[p + c1] += Wsw[h] * G[j][c1, :]  (lane products)
 * where Wsw swaps the re and im lanes of W. */
int NAME(full_cg_forward_complex)(const Tables *T, const REAL *qc, idx B, const REAL *x, const REAL *y,
                                  REAL *out, int threads)
{
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * T->so[T->G] + 1));
        REAL *Ys = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * T->dim2 + 1));
        const int ok = S && Ys;
        FLAG_FAILURE(ok, failed);
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *yb = y + b * 2 * T->dim2;
            REAL *ob = out + b * 2 * T->dim_out;
            NAME(combine)(T->G, T->qterm, T->qx, qc, x + b * 2 * T->dim1, T->so, S, 2);
            for (idx i = 0; i < 2 * T->dim2; i += 2) {
                Ys[i] = -yb[i + 1];
                Ys[i + 1] = yb[i];
            }
            for (idx j = 0; j < T->J; ++j) {
                const idx n1 = T->rn1[j], n2 = ROW_N2(j), L = 2 * n2, k = T->rtri[j];
                const idx g0 = T->qrow[j], g1 = T->qrow[j + 1];
                for (idx c1 = 0; c1 < n1; ++c1) {
                    REAL *o = ob + 2 * (T->ooff[j] + TRI_BASE(k, c1, n2));
                    idx c = 2 * TRI_START(k, c1);
                    for (; c + VW <= L; c += VW) {
                        VEC acc = {0};
                        for (idx g = g0; g < g1; ++g) {
                            const REAL *s = S + 2 * (T->so[g] + c1);
                            acc += s[0] * LOADV(yb + 2 * T->qy[g] + c) + s[1] * LOADV(Ys + 2 * T->qy[g] + c);
                        }
                        STOREV(o + c, acc);
                    }
                    for (; c + HW <= L; c += HW) {
                        HVEC acc = {0};
                        for (idx g = g0; g < g1; ++g) {
                            const REAL *s = S + 2 * (T->so[g] + c1);
                            acc += s[0] * LOADH(yb + 2 * T->qy[g] + c) + s[1] * LOADH(Ys + 2 * T->qy[g] + c);
                        }
                        STOREH(o + c, acc);
                    }
                    for (; c < L; ++c) {
                        REAL acc = 0;
                        for (idx g = g0; g < g1; ++g) {
                            const REAL *s = S + 2 * (T->so[g] + c1);
                            acc += s[0] * yb[2 * T->qy[g] + c] + s[1] * Ys[2 * T->qy[g] + c];
                        }
                        o[c] = acc;
                    }
                }
            }
        }
        free(S);
        free(Ys);
    }
    return failed;
}

int NAME(full_cg_backward_complex)(const Tables *T, const REAL *qc, const REAL *pc, idx B, const REAL *gz,
                                   const REAL *x, const REAL *y, REAL *gx, REAL *gy, int threads)
{
    const idx nm = 2 * N2MAX;            /* row stride of A and B: one x entry's lanes */
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * T->so[T->G] + 1));
        REAL *W = (REAL *)malloc(sizeof(REAL) * (size_t)(4 * T->wo[T->H] + 1));      /* W, then Wsw */
        REAL *acc = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * T->dim1 * nm + 1));    /* A, then B */
        REAL *accy = (REAL *)malloc(sizeof(REAL) * (size_t)(4 * T->dim2 + 1));       /* A, then B */
        const int ok = S && W && acc && accy;
        FLAG_FAILURE(ok, failed);
        REAL *Wsw = ok ? W + 2 * T->wo[T->H] : NULL, *accB = ok ? acc + T->dim1 * nm : NULL;
        REAL *accyB = ok ? accy + 2 * T->dim2 : NULL;
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *gb = gz + b * 2 * T->dim_out;
            if (gy) {
                NAME(combine)(T->G, T->qterm, T->qx, qc, x + b * 2 * T->dim1, T->so, S, 2);
                memset(accy, 0, sizeof(REAL) * (size_t)(4 * T->dim2));
            }
            if (gx) {
                NAME(combine)(T->H, T->pterm, T->py, pc, y + b * 2 * T->dim2, T->wo, W, 2);
                for (idx i = 0; i < 2 * T->wo[T->H]; i += 2) {
                    Wsw[i] = W[i + 1];
                    Wsw[i + 1] = W[i];
                }
                memset(acc, 0, sizeof(REAL) * (size_t)(2 * T->dim1 * nm));
            }
            for (idx j = 0; j < T->J; ++j) {
                const idx n1 = T->rn1[j], n2 = ROW_N2(j), L = 2 * n2, nt = L / VW * VW, k = T->rtri[j];
                const REAL *gj = gb + 2 * T->ooff[j];
                if (gy)
                    for (idx g = T->qrow[j]; g < T->qrow[j + 1]; ++g) {
                        const REAL *s = S + 2 * T->so[g];
                        REAL *a = accy + 2 * T->qy[g], *bb = accyB + 2 * T->qy[g];
                        if (k >= 0) {               /* a triangle: chunks of HW reals, summed in registers */
                            for (idx r0 = 0; r0 < L; r0 += HW) {
                                const idx end = r0 + HW <= L ? r0 + HW : L;
                                idx c1 = 0;         /* fragments with 2 (c1 + k) <= r0 cover the whole chunk */
                                if (end - r0 == HW) {
                                    HVEC sa = LOADH(a + r0), sb = LOADH(bb + r0);
                                    for (; c1 < n1 && 2 * (c1 + k) <= r0; ++c1) {
                                        const HVEC gv = LOADH(gj + 2 * TRI_BASE(k, c1, n2) + r0);
                                        sa += s[2 * c1] * gv;
                                        sb += s[2 * c1 + 1] * gv;
                                    }
                                    STOREH(a + r0, sa);
                                    STOREH(bb + r0, sb);
                                }
                                for (; c1 < n1 && 2 * (c1 + k) < end; ++c1) {   /* the rest: from column c1 + k */
                                    const REAL *grow = gj + 2 * TRI_BASE(k, c1, n2);
                                    for (idx c = 2 * (c1 + k) > r0 ? 2 * (c1 + k) : r0; c < end; ++c) {
                                        a[c] += s[2 * c1] * grow[c];
                                        bb[c] += s[2 * c1 + 1] * grow[c];
                                    }
                                }
                            }
                            continue;
                        }
                        for (idx c = 0; c < nt; c += VW) {
                            VEC sa = LOADV(a + c), sb = LOADV(bb + c);
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                const VEC gv = LOADV(gj + c1 * L + c);
                                sa += s[2 * c1] * gv;
                                sb += s[2 * c1 + 1] * gv;
                            }
                            STOREV(a + c, sa);
                            STOREV(bb + c, sb);
                        }
                        for (idx c = nt; c < L; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                a[c] += s[2 * c1] * gj[c1 * L + c];
                                bb[c] += s[2 * c1 + 1] * gj[c1 * L + c];
                            }
                    }
                if (gx)
                    for (idx h = T->prow[j]; h < T->prow[j + 1]; ++h) {
                        const REAL *w = W + 2 * T->wo[h], *ws = Wsw + 2 * T->wo[h];
                        REAL *a = acc + T->px[h] * nm, *bb = accB + T->px[h] * nm;
                        if (k >= 0) {
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                const REAL *grow = gj + 2 * TRI_BASE(k, c1, n2);
                                REAL *arow = a + c1 * nm, *brow = bb + c1 * nm;
                                idx c = 2 * TRI_START(k, c1);
                                for (; c + HW <= L; c += HW) {
                                    const HVEC gv = LOADH(grow + c);
                                    STOREH(arow + c, LOADH(arow + c) + LOADH(w + c) * gv);
                                    STOREH(brow + c, LOADH(brow + c) + LOADH(ws + c) * gv);
                                }
                                for (; c < L; ++c) {
                                    arow[c] += w[c] * grow[c];
                                    brow[c] += ws[c] * grow[c];
                                }
                            }
                            continue;
                        }
                        for (idx c = 0; c < nt; c += VW) {
                            const VEC wv = LOADV(w + c), wsv = LOADV(ws + c);
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                const VEC gv = LOADV(gj + c1 * L + c);
                                STOREV(a + c1 * nm + c, LOADV(a + c1 * nm + c) + wv * gv);
                                STOREV(bb + c1 * nm + c, LOADV(bb + c1 * nm + c) + wsv * gv);
                            }
                        }
                        for (idx c = nt; c < L; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                a[c1 * nm + c] += w[c] * gj[c1 * L + c];
                                bb[c1 * nm + c] += ws[c] * gj[c1 * L + c];
                            }
                    }
            }
            if (gy) {
                REAL *dst = gy + b * 2 * T->dim2;
                for (idx i = 0; i < 2 * T->dim2; i += 2) {
                    dst[i] = accy[i] - accyB[i + 1];
                    dst[i + 1] = accy[i + 1] + accyB[i];
                }
            }
            if (gx) {
                REAL *dst = gx + b * 2 * T->dim1;
                for (idx e = 0; e < T->dim1; ++e) {
                    REAL re = 0, im = 0;
                    for (idx c = 0; c < nm; c += 2) {
                        re += acc[e * nm + c] - acc[e * nm + c + 1];
                        im += accB[e * nm + c] + accB[e * nm + c + 1];
                    }
                    dst[2 * e] = re;
                    dst[2 * e + 1] = im;
                }
            }
        }
        free(S);
        free(W);
        free(acc);
        free(accy);
    }
    return failed;
}

#undef VBYTES
#undef ROW_N2
#undef N2MAX
#undef VEC
#undef VW
#undef LOADV
#undef STOREV
#undef HVEC
#undef HW
#undef LOADH
#undef STOREH
