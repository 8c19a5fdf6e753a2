/* Channel-wise ("diag") CG product and both input gradients on the CPU, real and complex dtypes.
 *
 * Compiled with full_cg.c (see so3net/kernels/native/__init__.py); the driver includes this file
 * once per (REAL, SUFFIX). The packed output is a sequence of J rows: row j (part l, row m, path
 * (l1, l2)) has n_j entries at element offset ooff[j]; entry i reads fragment i of the x row (or
 * fragment 0 when bx[j] = 0: a part with one fragment broadcasts) and fragment i of the y row (or 0
 * when by[j] = 0). Per sample, with G the output or its gradient and terms t of row j
 * ([zterm[j], zterm[j+1]): x-row offset xo[t], y-row offset yo[t], coefficient c[t]):
 *
 *   Z[j][i]                 = sum_t c_t X[xo_t + bx i] Y[yo_t + by i]
 *   gX[xo_t + bx i]        += c_t Y[yo_t + by i] G[j][i]
 *   gY[yo_t + by i]        += c_t X[xo_t + bx i] G[j][i]
 *
 * Complex data is interleaved (re, im) with real coefficients. Returns 0 (no scratch is needed).
 */
#ifndef SO3NET_ZIP_TABLES
#define SO3NET_ZIP_TABLES
#include <stdint.h>
#include <string.h>
typedef int64_t zidx;
typedef struct {
    zidx J, dim1, dim2, dim_out;
    const zidx *rn, *ooff, *bx, *by, *zterm, *xo, *yo;
} ZipTables;
#define ZCAT_(a, b) a##_##b
#define ZCAT(a, b) ZCAT_(a, b)
#endif

int ZCAT(zip_cg_forward, SUFFIX)(const ZipTables *T, const REAL *coef, zidx B, const REAL *x, const REAL *y,
                                 REAL *out, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (zidx b = 0; b < B; ++b) {
        const REAL *xb = x + b * T->dim1, *yb = y + b * T->dim2;
        REAL *ob = out + b * T->dim_out;
        memset(ob, 0, sizeof(REAL) * (size_t)T->dim_out);
        for (zidx j = 0; j < T->J; ++j) {
            const zidx n = T->rn[j], sx = T->bx[j], sy = T->by[j];
            REAL *o = ob + T->ooff[j];
            for (zidx t = T->zterm[j]; t < T->zterm[j + 1]; ++t) {
                const REAL w = coef[t], *xr = xb + T->xo[t], *yr = yb + T->yo[t];
                for (zidx i = 0; i < n; ++i) o[i] += w * xr[sx * i] * yr[sy * i];
            }
        }
    }
    return 0;
}

int ZCAT(zip_cg_backward, SUFFIX)(const ZipTables *T, const REAL *coef, zidx B, const REAL *gz, const REAL *x,
                                  const REAL *y, REAL *gx, REAL *gy, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (zidx b = 0; b < B; ++b) {
        const REAL *gb = gz + b * T->dim_out;
        if (gx) memset(gx + b * T->dim1, 0, sizeof(REAL) * (size_t)T->dim1);
        if (gy) memset(gy + b * T->dim2, 0, sizeof(REAL) * (size_t)T->dim2);
        for (zidx j = 0; j < T->J; ++j) {
            const zidx n = T->rn[j], sx = T->bx[j], sy = T->by[j];
            const REAL *g = gb + T->ooff[j];
            for (zidx t = T->zterm[j]; t < T->zterm[j + 1]; ++t) {
                const REAL w = coef[t];
                if (gx) {
                    const REAL *yr = y + b * T->dim2 + T->yo[t];
                    REAL *a = gx + b * T->dim1 + T->xo[t];
                    for (zidx i = 0; i < n; ++i) a[sx * i] += w * yr[sy * i] * g[i];
                }
                if (gy) {
                    const REAL *xr = x + b * T->dim1 + T->xo[t];
                    REAL *a = gy + b * T->dim2 + T->yo[t];
                    for (zidx i = 0; i < n; ++i) a[sy * i] += w * xr[sx * i] * g[i];
                }
            }
        }
    }
    return 0;
}

int ZCAT(zip_cg_forward_complex, SUFFIX)(const ZipTables *T, const REAL *coef, zidx B, const REAL *x,
                                         const REAL *y, REAL *out, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (zidx b = 0; b < B; ++b) {
        const REAL *xb = x + 2 * b * T->dim1, *yb = y + 2 * b * T->dim2;
        REAL *ob = out + 2 * b * T->dim_out;
        memset(ob, 0, sizeof(REAL) * (size_t)(2 * T->dim_out));
        for (zidx j = 0; j < T->J; ++j) {
            const zidx n = T->rn[j], sx = 2 * T->bx[j], sy = 2 * T->by[j];
            REAL *o = ob + 2 * T->ooff[j];
            for (zidx t = T->zterm[j]; t < T->zterm[j + 1]; ++t) {
                const REAL w = coef[t], *xr = xb + 2 * T->xo[t], *yr = yb + 2 * T->yo[t];
                for (zidx i = 0; i < n; ++i) {
                    const REAL ar = xr[sx * i], ai = xr[sx * i + 1], br = yr[sy * i], bi = yr[sy * i + 1];
                    o[2 * i] += w * (ar * br - ai * bi);
                    o[2 * i + 1] += w * (ar * bi + ai * br);
                }
            }
        }
    }
    return 0;
}

int ZCAT(zip_cg_backward_complex, SUFFIX)(const ZipTables *T, const REAL *coef, zidx B, const REAL *gz,
                                          const REAL *x, const REAL *y, REAL *gx, REAL *gy, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (zidx b = 0; b < B; ++b) {
        const REAL *gb = gz + 2 * b * T->dim_out;
        if (gx) memset(gx + 2 * b * T->dim1, 0, sizeof(REAL) * (size_t)(2 * T->dim1));
        if (gy) memset(gy + 2 * b * T->dim2, 0, sizeof(REAL) * (size_t)(2 * T->dim2));
        for (zidx j = 0; j < T->J; ++j) {
            const zidx n = T->rn[j], sx = 2 * T->bx[j], sy = 2 * T->by[j];
            const REAL *g = gb + 2 * T->ooff[j];
            for (zidx t = T->zterm[j]; t < T->zterm[j + 1]; ++t) {
                const REAL w = coef[t];
                const REAL *other = gx ? y + 2 * (b * T->dim2 + T->yo[t]) : NULL;
                REAL *a = gx ? gx + 2 * (b * T->dim1 + T->xo[t]) : NULL;
                for (zidx i = 0; gx && i < n; ++i) {       /* gX += c Y G */
                    const REAL br = other[sy * i], bi = other[sy * i + 1], gr = g[2 * i], gi = g[2 * i + 1];
                    a[sx * i] += w * (br * gr - bi * gi);
                    a[sx * i + 1] += w * (br * gi + bi * gr);
                }
                other = gy ? x + 2 * (b * T->dim1 + T->xo[t]) : NULL;
                a = gy ? gy + 2 * (b * T->dim2 + T->yo[t]) : NULL;
                for (zidx i = 0; gy && i < n; ++i) {       /* gY += c X G */
                    const REAL ar = other[sx * i], ai = other[sx * i + 1], gr = g[2 * i], gi = g[2 * i + 1];
                    a[sy * i] += w * (ar * gr - ai * gi);
                    a[sy * i + 1] += w * (ar * gi + ai * gr);
                }
            }
        }
    }
    return 0;
}
