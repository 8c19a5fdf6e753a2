/* Uniform full CG product and both input gradients on the CPU (real and complex dtypes).
 *
 * Compiled on first use by so3net/kernels/native/__init__.py (which documents the tables); the
 * driver it writes includes this file once per (REAL, SUFFIX) = (float, f32) / (double, f64) and
 * VARIANT: FIXED_N2 = 8, 16, 32 (channel loops unrolled) or none ("any": n2 read at run time).
 * Per sample b, with X (R1, n1), Y (R2, n2) and the packed output or its gradient G (J, n1, n2),
 * all row-major:
 *
 *   Z[j, c1, :]  = sum_{q-groups g of row j} S[g, c1] * Y[q_g, :]
 *   gY[q_g, :]  += sum_c1 S[g, c1] * G[j, c1, :]             (every q-group g of every row j)
 *   gX[p_h, c1] += <W[h, :], G[j, c1, :]>                     (every p-group h of every row j)
 *
 * with S[g, c1] = sum_{terms t of q-group g} c_t X[p_t, c1] and W[h, :] = sum_{terms t of p-group h}
 * c_t Y[q_t, :], built once per sample. Only nonzero CG terms are read (terms of a row that share
 * their y-row, or x-row, are merged first). The channel loops run on GCC vectors (64 bytes where they tile a row, else 32); samples
 * are split over OpenMP threads. Each function returns 0, or 1 when a thread could not allocate its
 * scratch (then the outputs are incomplete and the caller raises).
 */
#ifndef SO3NET_UNIFORM_TABLES
#define SO3NET_UNIFORM_TABLES
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* Row j's q-groups are [qrow[j], qrow[j+1]); group g has y-row qq[g] and terms [qterm[g], qterm[g+1])
 * with x-rows qp[t] (coefficients qc[t], passed in the dtype). p-groups (h) likewise: prow, pp
 * (x-row), pterm, pq (y-rows; coefficients pc). */
typedef int64_t idx;
typedef struct {
    idx J, n1, n2, R1, R2, G, H;
    const idx *qrow, *qq, *qterm, *qp;
    const idx *prow, *pp, *pterm, *pq;
} Tables;
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define NAME(f) CAT(CAT(f, SUFFIX), VARIANT)
#endif

#if defined(FIXED_N2)                     /* 64-byte vectors where they tile a row exactly */
#define VBYTES ((FIXED_N2 * sizeof(REAL)) % 64 == 0 ? 64 : 32)
#else
#define VBYTES 32
#endif
typedef REAL NAME(vec) __attribute__((vector_size(VBYTES), aligned(sizeof(REAL)), may_alias));
#define VEC NAME(vec)
#define VW ((idx)(VBYTES / sizeof(REAL)))
#define LOADV(p) (*(const VEC *)(p))
#define STOREV(p, v) (*(VEC *)(p) = (v))
#ifdef FIXED_N2
#define N2 ((idx)FIXED_N2)
#else
#define N2 (T->n2)
#endif
#define NV (N2 / VW)                     /* whole vectors per row of n2 channels */
#define NT (NV * VW)                     /* first channel of the scalar tail */

/* dst[k, :] = sum_{t in [start[k], start[k+1])} coef[t] src[row[t], :] for the `groups` groups, rows of
 * `len` reals: S from x with the q-groups (len n1, or 2 n1 for complex data), W from y with the
 * p-groups (len n2, or 2 n2). */
static void NAME(combine)(idx groups, const idx *restrict start, const idx *restrict row, const REAL *restrict coef,
                          const REAL *restrict src, idx len, REAL *restrict dst)
{
    for (idx k = 0; k < groups; ++k) {
        REAL *restrict d = dst + k * len;
        for (idx c = 0; c < len; ++c) d[c] = 0;
        for (idx t = start[k]; t < start[k + 1]; ++t) {
            const REAL w = coef[t];
            const REAL *restrict r = src + row[t] * len;
            for (idx c = 0; c < len; ++c) d[c] += w * r[c];
        }
    }
}

int NAME(uniform_cg_forward)(const Tables *T, const REAL *qc, idx B, const REAL *x, const REAL *y, REAL *out,
                              int threads)
{
    const idx n1 = T->n1, width = T->J * n1 * N2;
    int failed = 0;                      /* set by a thread whose scratch could not be allocated */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->G * n1 + 1));
        const int ok = S != NULL;
        if (!ok) failed = 1;
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *yb = y + b * T->R2 * N2;
            REAL *ob = out + b * width;
            NAME(combine)(T->G, T->qterm, T->qp, qc, x + b * T->R1 * n1, n1, S);
            for (idx j = 0; j < T->J; ++j) {
                const idx g0 = T->qrow[j], g1 = T->qrow[j + 1];
                for (idx c1 = 0; c1 < n1; ++c1) {
                    REAL *o = ob + (j * n1 + c1) * N2;
                    for (idx v = 0; v < NV; ++v) {
                        VEC acc = {0};
                        for (idx g = g0; g < g1; ++g)
                            acc += S[g * n1 + c1] * LOADV(yb + T->qq[g] * N2 + v * VW);
                        STOREV(o + v * VW, acc);
                    }
                    for (idx c = NT; c < N2; ++c) {
                        REAL acc = 0;
                        for (idx g = g0; g < g1; ++g) acc += S[g * n1 + c1] * yb[T->qq[g] * N2 + c];
                        o[c] = acc;
                    }
                }
            }
        }
        free(S);
    }
    return failed;
}

/* gx (B, R1, n1) and/or gy (B, R2, n2); either may be NULL (then y, resp. x, may be NULL too). */
int NAME(uniform_cg_backward)(const Tables *T, const REAL *qc, const REAL *pc, idx B, const REAL *gz,
                               const REAL *x, const REAL *y, REAL *gx, REAL *gy, int threads)
{
    const idx n1 = T->n1, width = T->J * n1 * N2;
    int failed = 0;                      /* set by a thread whose scratch could not be allocated */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->G * n1 + 1));
        REAL *W = (REAL *)malloc(sizeof(REAL) * (size_t)(T->H * N2 + 1));
        REAL *acc = (REAL *)malloc(sizeof(REAL) * (size_t)(T->R1 * n1 * N2 + 1));
        const int ok = S && W && acc;
        if (!ok) failed = 1;
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *gb = gz + b * width;
            REAL *gyb = gy ? gy + b * T->R2 * N2 : NULL;
            if (gy) {
                NAME(combine)(T->G, T->qterm, T->qp, qc, x + b * T->R1 * n1, n1, S);
                memset(gyb, 0, sizeof(REAL) * (size_t)(T->R2 * N2));
            }
            if (gx) {
                NAME(combine)(T->H, T->pterm, T->pq, pc, y + b * T->R2 * N2, N2, W);
                memset(acc, 0, sizeof(REAL) * (size_t)(T->R1 * n1 * N2));
            }
            for (idx j = 0; j < T->J; ++j) {
                const REAL *gj = gb + j * n1 * N2;
                if (gy)
                    for (idx g = T->qrow[j]; g < T->qrow[j + 1]; ++g) {
                        const REAL *s = S + g * n1;
                        REAL *a = gyb + T->qq[g] * N2;
                        for (idx v = 0; v < NV; ++v) {
                            VEC sum = LOADV(a + v * VW);
                            for (idx c1 = 0; c1 < n1; ++c1) sum += s[c1] * LOADV(gj + c1 * N2 + v * VW);
                            STOREV(a + v * VW, sum);
                        }
                        for (idx c = NT; c < N2; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) a[c] += s[c1] * gj[c1 * N2 + c];
                    }
                if (gx)
                    for (idx h = T->prow[j]; h < T->prow[j + 1]; ++h) {
                        const REAL *w = W + h * N2;
                        REAL *a = acc + T->pp[h] * n1 * N2;
                        for (idx v = 0; v < NV; ++v) {
                            const VEC wv = LOADV(w + v * VW);
                            for (idx c1 = 0; c1 < n1; ++c1)
                                STOREV(a + c1 * N2 + v * VW, LOADV(a + c1 * N2 + v * VW) + wv * LOADV(gj + c1 * N2 + v * VW));
                        }
                        for (idx c = NT; c < N2; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) a[c1 * N2 + c] += w[c] * gj[c1 * N2 + c];
                    }
            }
            if (gx) {
                REAL *dst = gx + b * T->R1 * n1;
                for (idx r = 0; r < T->R1 * n1; ++r) {
                    REAL sum = 0;
                    for (idx c = 0; c < N2; ++c) sum += acc[r * N2 + c];
                    dst[r] = sum;
                }
            }
        }
        free(S);
        free(W);
        free(acc);
    }
    return failed;
}

/* Complex data (interleaved re, im; coefficients real). With s = S[g, c1] = sr + i si and, per
 * sample, Ys[q] = i Y[q] (interleaved: -Im, Re):
 *   Z[j, c1]  = sum_g sr Y[q_g] + si Ys[q_g]
 *   gY[q]     = A[q] + i B[q],          A[q] += sr G[j, c1], B[q] += si G[j, c1]   (real sums)
 *   gX[p, c1] = sum_c (even - odd lanes of A[p, c1]) + i sum_c (B[p, c1]),
 *               A[p, c1] += W[h] * G[j, c1], B[p, c1] += Wsw[h] * G[j, c1]   (lane products)
 * where Wsw swaps the re and im lanes of W. Every row of n2 complex numbers is 2 n2 reals. */
#define L2 (2 * N2)                      /* reals per complex row of y, of G */
#define LV (L2 / VW)
#define LT (LV * VW)

int NAME(uniform_cg_forward_complex)(const Tables *T, const REAL *qc, idx B, const REAL *x, const REAL *y,
                                      REAL *out, int threads)
{
    const idx n1 = T->n1, width = T->J * n1 * L2;
    int failed = 0;                      /* set by a thread whose scratch could not be allocated */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->G * 2 * n1 + 1));
        REAL *Ys = (REAL *)malloc(sizeof(REAL) * (size_t)(T->R2 * L2 + 1));
        const int ok = S && Ys;
        if (!ok) failed = 1;
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *yb = y + b * T->R2 * L2;
            REAL *ob = out + b * width;
            NAME(combine)(T->G, T->qterm, T->qp, qc, x + b * T->R1 * 2 * n1, 2 * n1, S);
            for (idx i = 0; i < T->R2 * L2; i += 2) {
                Ys[i] = -yb[i + 1];
                Ys[i + 1] = yb[i];
            }
            for (idx j = 0; j < T->J; ++j) {
                const idx g0 = T->qrow[j], g1 = T->qrow[j + 1];
                for (idx c1 = 0; c1 < n1; ++c1) {
                    REAL *o = ob + (j * n1 + c1) * L2;
                    for (idx v = 0; v < LV; ++v) {
                        VEC acc = {0};
                        for (idx g = g0; g < g1; ++g) {
                            const idx row = T->qq[g] * L2 + v * VW;
                            acc += S[g * 2 * n1 + 2 * c1] * LOADV(yb + row) + S[g * 2 * n1 + 2 * c1 + 1] * LOADV(Ys + row);
                        }
                        STOREV(o + v * VW, acc);
                    }
                    for (idx c = LT; c < L2; ++c) {
                        REAL acc = 0;
                        for (idx g = g0; g < g1; ++g)
                            acc += S[g * 2 * n1 + 2 * c1] * yb[T->qq[g] * L2 + c] + S[g * 2 * n1 + 2 * c1 + 1] * Ys[T->qq[g] * L2 + c];
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

int NAME(uniform_cg_backward_complex)(const Tables *T, const REAL *qc, const REAL *pc, idx B, const REAL *gz,
                                       const REAL *x, const REAL *y, REAL *gx, REAL *gy, int threads)
{
    const idx n1 = T->n1, width = T->J * n1 * L2;
    int failed = 0;                      /* set by a thread whose scratch could not be allocated */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->G * 2 * n1 + 1));
        REAL *W = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * T->H * L2 + 1));          /* W, then Wsw */
        REAL *acc = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * T->R1 * n1 * L2 + 1));  /* A, then B */
        REAL *accy = (REAL *)malloc(sizeof(REAL) * (size_t)(2 * T->R2 * L2 + 1));      /* A, then B */
        const int ok = S && W && acc && accy;
        if (!ok) failed = 1;
        REAL *Wsw = ok ? W + T->H * L2 : NULL, *accB = ok ? acc + T->R1 * n1 * L2 : NULL;
        REAL *accyB = ok ? accy + T->R2 * L2 : NULL;
#pragma omp for schedule(static)
        for (idx b = 0; b < B; ++b) {
            if (!ok) continue;
            const REAL *gb = gz + b * width;
            if (gy) {
                NAME(combine)(T->G, T->qterm, T->qp, qc, x + b * T->R1 * 2 * n1, 2 * n1, S);
                memset(accy, 0, sizeof(REAL) * (size_t)(2 * T->R2 * L2));
            }
            if (gx) {
                NAME(combine)(T->H, T->pterm, T->pq, pc, y + b * T->R2 * L2, L2, W);
                for (idx i = 0; i < T->H * L2; i += 2) {
                    Wsw[i] = W[i + 1];
                    Wsw[i + 1] = W[i];
                }
                memset(acc, 0, sizeof(REAL) * (size_t)(2 * T->R1 * n1 * L2));
            }
            for (idx j = 0; j < T->J; ++j) {
                const REAL *gj = gb + j * n1 * L2;
                if (gy)
                    for (idx g = T->qrow[j]; g < T->qrow[j + 1]; ++g) {
                        const REAL *s = S + g * 2 * n1;
                        REAL *a = accy + T->qq[g] * L2, *bb = accyB + T->qq[g] * L2;
                        for (idx v = 0; v < LV; ++v) {
                            VEC sa = LOADV(a + v * VW), sb = LOADV(bb + v * VW);
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                const VEC gv = LOADV(gj + c1 * L2 + v * VW);
                                sa += s[2 * c1] * gv;
                                sb += s[2 * c1 + 1] * gv;
                            }
                            STOREV(a + v * VW, sa);
                            STOREV(bb + v * VW, sb);
                        }
                        for (idx c = LT; c < L2; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                a[c] += s[2 * c1] * gj[c1 * L2 + c];
                                bb[c] += s[2 * c1 + 1] * gj[c1 * L2 + c];
                            }
                    }
                if (gx)
                    for (idx h = T->prow[j]; h < T->prow[j + 1]; ++h) {
                        const REAL *w = W + h * L2, *ws = Wsw + h * L2;
                        REAL *a = acc + T->pp[h] * n1 * L2, *bb = accB + T->pp[h] * n1 * L2;
                        for (idx v = 0; v < LV; ++v) {
                            const VEC wv = LOADV(w + v * VW), wsv = LOADV(ws + v * VW);
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                const idx at = c1 * L2 + v * VW;
                                const VEC gv = LOADV(gj + at);
                                STOREV(a + at, LOADV(a + at) + wv * gv);
                                STOREV(bb + at, LOADV(bb + at) + wsv * gv);
                            }
                        }
                        for (idx c = LT; c < L2; ++c)
                            for (idx c1 = 0; c1 < n1; ++c1) {
                                a[c1 * L2 + c] += w[c] * gj[c1 * L2 + c];
                                bb[c1 * L2 + c] += ws[c] * gj[c1 * L2 + c];
                            }
                    }
            }
            if (gy) {
                REAL *dst = gy + b * T->R2 * L2;
                for (idx i = 0; i < T->R2 * L2; i += 2) {
                    dst[i] = accy[i] - accyB[i + 1];
                    dst[i + 1] = accy[i + 1] + accyB[i];
                }
            }
            if (gx) {
                REAL *dst = gx + b * T->R1 * 2 * n1;
                for (idx r = 0; r < T->R1 * n1; ++r) {
                    REAL re = 0, im = 0;
                    for (idx c = 0; c < L2; c += 2) {
                        re += acc[r * L2 + c] - acc[r * L2 + c + 1];
                        im += accB[r * L2 + c] + accB[r * L2 + c + 1];
                    }
                    dst[2 * r] = re;
                    dst[2 * r + 1] = im;
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

#undef L2
#undef LV
#undef LT
#undef VEC
#undef VBYTES
#undef VW
#undef LOADV
#undef STOREV
#undef N2
#undef NV
#undef NT
