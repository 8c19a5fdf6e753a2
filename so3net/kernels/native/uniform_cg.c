/* Uniform full CG product and both input gradients, real dtypes, on the CPU.
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
 * are split over OpenMP threads.
 */
#ifndef SO3NET_UNIFORM_TABLES
#define SO3NET_UNIFORM_TABLES
#include <stdlib.h>
#include <string.h>
/* Row j's q-groups are [qrow[j], qrow[j+1]); group g has y-row qq[g] and terms [qterm[g], qterm[g+1])
 * with x-rows qp[t] (coefficients qc[t], passed in the dtype). p-groups (h) likewise: prow, pp
 * (x-row), pterm, pq (y-rows; coefficients pc). */
typedef struct {
    long J, n1, n2, R1, R2, G, H;
    const long *qrow, *qq, *qterm, *qp;
    const long *prow, *pp, *pterm, *pq;
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
#define VW ((long)(VBYTES / sizeof(REAL)))
#define LOADV(p) (*(const VEC *)(p))
#define STOREV(p, v) (*(VEC *)(p) = (v))
#ifdef FIXED_N2
#define N2 ((long)FIXED_N2)
#else
#define N2 (T->n2)
#endif
#define NV (N2 / VW)                     /* whole vectors per row of n2 channels */
#define NT (NV * VW)                     /* first channel of the scalar tail */

/* S[g, :] for every q-group g of sample x. */
static void NAME(scalars)(const Tables *T, const REAL *restrict qc, const REAL *restrict x, REAL *restrict S)
{
    const long n1 = T->n1;
    for (long g = 0; g < T->G; ++g) {
        REAL *restrict s = S + g * n1;
        for (long c = 0; c < n1; ++c) s[c] = 0;
        for (long t = T->qterm[g]; t < T->qterm[g + 1]; ++t) {
            const REAL w = qc[t];
            const REAL *restrict xr = x + T->qp[t] * n1;
            for (long c = 0; c < n1; ++c) s[c] += w * xr[c];
        }
    }
}

void NAME(uniform_cg_forward)(const Tables *T, const REAL *qc, long B, const REAL *x, const REAL *y, REAL *out,
                              int threads)
{
    const long n1 = T->n1, width = T->J * n1 * N2;
#pragma omp parallel num_threads(threads)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->G * n1 + 1));
#pragma omp for schedule(static)
        for (long b = 0; b < B; ++b) {
            const REAL *yb = y + b * T->R2 * N2;
            REAL *ob = out + b * width;
            NAME(scalars)(T, qc, x + b * T->R1 * n1, S);
            for (long j = 0; j < T->J; ++j) {
                const long g0 = T->qrow[j], g1 = T->qrow[j + 1];
                for (long c1 = 0; c1 < n1; ++c1) {
                    REAL *o = ob + (j * n1 + c1) * N2;
                    for (long v = 0; v < NV; ++v) {
                        VEC acc = {0};
                        for (long g = g0; g < g1; ++g)
                            acc += S[g * n1 + c1] * LOADV(yb + T->qq[g] * N2 + v * VW);
                        STOREV(o + v * VW, acc);
                    }
                    for (long c = NT; c < N2; ++c) {
                        REAL acc = 0;
                        for (long g = g0; g < g1; ++g) acc += S[g * n1 + c1] * yb[T->qq[g] * N2 + c];
                        o[c] = acc;
                    }
                }
            }
        }
        free(S);
    }
}

/* gx (B, R1, n1) and/or gy (B, R2, n2); either may be NULL (then y, resp. x, may be NULL too). */
void NAME(uniform_cg_backward)(const Tables *T, const REAL *qc, const REAL *pc, long B, const REAL *gz,
                               const REAL *x, const REAL *y, REAL *gx, REAL *gy, int threads)
{
    const long n1 = T->n1, width = T->J * n1 * N2;
#pragma omp parallel num_threads(threads)
    {
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(T->G * n1 + 1));
        REAL *W = (REAL *)malloc(sizeof(REAL) * (size_t)(T->H * N2 + 1));
        REAL *acc = (REAL *)malloc(sizeof(REAL) * (size_t)(T->R1 * n1 * N2 + 1));
#pragma omp for schedule(static)
        for (long b = 0; b < B; ++b) {
            const REAL *gb = gz + b * width;
            REAL *gyb = gy ? gy + b * T->R2 * N2 : NULL;
            if (gy) {
                NAME(scalars)(T, qc, x + b * T->R1 * n1, S);
                memset(gyb, 0, sizeof(REAL) * (size_t)(T->R2 * N2));
            }
            if (gx) {
                const REAL *yb = y + b * T->R2 * N2;
                for (long h = 0; h < T->H; ++h) {
                    REAL *w = W + h * N2;
                    for (long c = 0; c < N2; ++c) w[c] = 0;
                    for (long t = T->pterm[h]; t < T->pterm[h + 1]; ++t)
                        for (long c = 0; c < N2; ++c) w[c] += pc[t] * yb[T->pq[t] * N2 + c];
                }
                memset(acc, 0, sizeof(REAL) * (size_t)(T->R1 * n1 * N2));
            }
            for (long j = 0; j < T->J; ++j) {
                const REAL *gj = gb + j * n1 * N2;
                if (gy)
                    for (long g = T->qrow[j]; g < T->qrow[j + 1]; ++g) {
                        const REAL *s = S + g * n1;
                        REAL *a = gyb + T->qq[g] * N2;
                        for (long v = 0; v < NV; ++v) {
                            VEC sum = LOADV(a + v * VW);
                            for (long c1 = 0; c1 < n1; ++c1) sum += s[c1] * LOADV(gj + c1 * N2 + v * VW);
                            STOREV(a + v * VW, sum);
                        }
                        for (long c = NT; c < N2; ++c)
                            for (long c1 = 0; c1 < n1; ++c1) a[c] += s[c1] * gj[c1 * N2 + c];
                    }
                if (gx)
                    for (long h = T->prow[j]; h < T->prow[j + 1]; ++h) {
                        const REAL *w = W + h * N2;
                        REAL *a = acc + T->pp[h] * n1 * N2;
                        for (long v = 0; v < NV; ++v) {
                            const VEC wv = LOADV(w + v * VW);
                            for (long c1 = 0; c1 < n1; ++c1)
                                STOREV(a + c1 * N2 + v * VW, LOADV(a + c1 * N2 + v * VW) + wv * LOADV(gj + c1 * N2 + v * VW));
                        }
                        for (long c = NT; c < N2; ++c)
                            for (long c1 = 0; c1 < n1; ++c1) a[c1 * N2 + c] += w[c] * gj[c1 * N2 + c];
                    }
            }
            if (gx) {
                REAL *dst = gx + b * T->R1 * n1;
                for (long r = 0; r < T->R1 * n1; ++r) {
                    REAL sum = 0;
                    for (long c = 0; c < N2; ++c) sum += acc[r * N2 + c];
                    dst[r] = sum;
                }
            }
        }
        free(S);
        free(W);
        free(acc);
    }
}

#undef VEC
#undef VBYTES
#undef VW
#undef LOADV
#undef STOREV
#undef N2
#undef NV
#undef NT
