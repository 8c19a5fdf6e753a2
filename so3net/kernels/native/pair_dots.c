/* Atom-pair scalars over a padded neighbour list on the CPU (complex data): Cormorant's F_i · F_j.
 *
 * Compiled with full_cg.c (see so3net/kernels/native/build.py); the driver includes this file once
 * per (REAL, SUFFIX). For the rows i < N of a list (row i is node row[i]; slot k < d holds source
 * node src[i, k], or a value outside [0, n) for an empty slot), every present part p (rows
 * [first_p, first_p + size_p) of the packed node features X (n, D, C)) and channel c < C:
 *
 *   P[i, k, p, c] = sum_{m < size_p} conj(X[row_i, first_p + m, c]) X[src_ik, first_p + m, c]   (0 in empty slots)
 *
 * and the gradient of a real loss with gradient G of P (torch's convention for complex tensors):
 *
 *   gX[row_i, first_p + m, c] += conj(G[i, k, p, c]) X[src_ik, first_p + m, c]
 *   gX[src_ik, first_p + m, c] += G[i, k, p, c] X[row_i, first_p + m, c]
 *
 * Layouts (complex interleaved, element offsets): X and gX (n, D, C), P and G (N, d, np, C), row (N,),
 * src (N, d) int64, first and size (np,) int64. Rows i are split over OpenMP threads; each thread
 * sums its node gradients in a private buffer (as many threads as such buffers fit in 512 MiB),
 * added up at the end. Returns 0, or 1 when memory for
 * the buffers could not be allocated.
 */
#ifndef SO3NET_PAIR_DOTS
#define SO3NET_PAIR_DOTS
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "private_buffers.h"
typedef int64_t didx;
#define DCAT_(a, b) a##_##b
#define DCAT(a, b) DCAT_(a, b)
#endif

int DCAT(pair_dots_forward, SUFFIX)(didx N, didx d, didx C, didx D, didx n, didx np, const REAL *X,
                                     const didx *row, const didx *src, const didx *first, const didx *size,
                                     REAL *P, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (didx i = 0; i < N; ++i) {
        const REAL *xi = X + 2 * row[i] * D * C;
        for (didx k = 0; k < d; ++k) {
            REAL *out = P + 2 * (i * d + k) * np * C;
            const didx j = src[i * d + k];
            if (j < 0 || j >= n) {
                memset(out, 0, sizeof(REAL) * (size_t)(2 * np * C));
                continue;
            }
            const REAL *xj = X + 2 * j * D * C;
            for (didx p = 0; p < np; ++p) {
                REAL re[64], im[64];                    /* channels in blocks of 64 */
                for (didx c0 = 0; c0 < C; c0 += 64) {
                    const didx cn = C - c0 < 64 ? C - c0 : 64;
                    for (didx c = 0; c < cn; ++c) re[c] = im[c] = 0;
                    for (didx m = first[p]; m < first[p] + size[p]; ++m) {
                        const REAL *a = xi + 2 * (m * C + c0), *b = xj + 2 * (m * C + c0);
#pragma omp simd
                        for (didx c = 0; c < cn; ++c) {     /* conj(a) b */
                            re[c] += a[2 * c] * b[2 * c] + a[2 * c + 1] * b[2 * c + 1];
                            im[c] += a[2 * c] * b[2 * c + 1] - a[2 * c + 1] * b[2 * c];
                        }
                    }
                    for (didx c = 0; c < cn; ++c) {
                        out[2 * (p * C + c0 + c)] = re[c];
                        out[2 * (p * C + c0 + c) + 1] = im[c];
                    }
                }
            }
        }
    }
    return 0;
}

int DCAT(pair_dots_backward, SUFFIX)(didx N, didx d, didx C, didx D, didx n, didx np, const REAL *G,
                                      const REAL *X, const didx *row, const didx *src, const didx *first,
                                      const didx *size, REAL *gX, int threads)
{
    const size_t nodesize = (size_t)(2 * n * D * C);
    const int T = SO3NET_BUFFER_THREADS(threads, nodesize * sizeof(REAL));
    REAL *acc = calloc((size_t)T * nodesize + 1, sizeof(REAL));
    if (!acc) return 1;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        REAL *mine = acc + (size_t)me * nodesize;
#pragma omp for schedule(static)
        for (didx i = 0; i < N; ++i) {
            const REAL *xi = X + 2 * row[i] * D * C;
            REAL *gi = mine + 2 * row[i] * D * C;
            for (didx k = 0; k < d; ++k) {
                const didx j = src[i * d + k];
                if (j < 0 || j >= n) continue;
                const REAL *xj = X + 2 * j * D * C, *g = G + 2 * (i * d + k) * np * C;
                REAL *gj = mine + 2 * j * D * C;
                for (didx p = 0; p < np; ++p)
                    for (didx m = first[p]; m < first[p] + size[p]; ++m) {
                        const REAL *a = xi + 2 * m * C, *b = xj + 2 * m * C, *h = g + 2 * p * C;
                        REAL *ga = gi + 2 * m * C, *gb = gj + 2 * m * C;    /* the same rows when j = row[i] */
                        for (didx c = 0; c < C; ++c) {
                            const REAL hr = h[2 * c], hi = h[2 * c + 1];
                            ga[2 * c] += hr * b[2 * c] + hi * b[2 * c + 1];          /* conj(h) b */
                            ga[2 * c + 1] += hr * b[2 * c + 1] - hi * b[2 * c];
                            gb[2 * c] += hr * a[2 * c] - hi * a[2 * c + 1];          /* h a */
                            gb[2 * c + 1] += hr * a[2 * c + 1] + hi * a[2 * c];
                        }
                    }
            }
        }
    }
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (didx e = 0; e < 2 * n * D * C; ++e) {
        REAL sum = 0;
        for (int t = 0; t < T; ++t) sum += acc[(size_t)t * nodesize + (size_t)e];
        gX[e] = sum;
    }
    free(acc);
    return 0;
}
