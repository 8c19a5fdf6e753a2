/* Batched products of small complex matrices with optional conjugation, on the CPU:
 *
 *   C[b] = op_a(A[b]) op_b(B[b]),   op = identity or complex conjugation (conja, conjb),
 *
 * A (nb, M, K) and B (nb, K, N) with any strides (in complex elements: transposes are strides),
 * C (nb, M, N) contiguous. Complex data is interleaved (re, im). The outer strategy's batched
 * matmuls (so3net/kernels/message.py) are thousands of 8-25 sized products, for which a GEMM
 * library pays its per-call overhead per matrix and torch conjugates an operand with a full copy
 * first; here each B[b] is copied once into planar (re, im) scratch with its conjugation applied,
 * and every row of C accumulates over k in planar registers: the inner loop is a plain vectorised
 * pass over n. Compiled with full_cg.c and zip_cg.c (see build.py), once per (REAL, SUFFIX).
 * Returns 0, or 1 when the per-thread scratch could not be allocated.
 */
#ifndef SO3NET_SMALL_BMM
#define SO3NET_SMALL_BMM
#define CHUNK 16
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>
#endif

int ZCAT(small_bmm_complex, SUFFIX)(zidx nb, zidx M, zidx N, zidx K,
                                    const REAL *A, zidx sab, zidx sam, zidx sak,
                                    const REAL *B, zidx sbb, zidx sbk, zidx sbn,
                                    REAL *C, int conja, int conjb, int threads)
{
    const REAL sa = conja ? (REAL)-1 : (REAL)1, sb = conjb ? (REAL)-1 : (REAL)1;
    const zidx per_thread = 2 * K * N + CHUNK;              /* planar B[b] (+ slack for the last chunk's reads) */
    if (threads < 1)
        threads = 1;
    REAL *scratch = (REAL *)malloc(sizeof(REAL) * (size_t)(per_thread * threads + 1));
    if (!scratch)
        return 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *br = scratch + per_thread * omp_get_thread_num();
        REAL *bi = br + K * N;
#pragma omp for schedule(static)
        for (zidx b = 0; b < nb; b++) {
            const REAL *Bb = B + 2 * b * sbb, *Ab = A + 2 * b * sab;
            REAL *Cb = C + 2 * b * M * N;
            for (zidx k = 0; k < K; k++)
                for (zidx n = 0; n < N; n++) {
                    const REAL *p = Bb + 2 * (k * sbk + n * sbn);
                    br[k * N + n] = p[0];
                    bi[k * N + n] = sb * p[1];
                }
            for (zidx n0 = 0; n0 < N; n0 += CHUNK) {      /* columns in register-sized chunks */
                const zidx w = N - n0 < CHUNK ? N - n0 : CHUNK;
                zidx m = 0;
                for (; m + 2 <= M; m += 2) {                  /* two rows of C share each load of B */
                    REAL r0[CHUNK] = {0}, i0[CHUNK] = {0}, r1[CHUNK] = {0}, i1[CHUNK] = {0};
                    for (zidx k = 0; k < K; k++) {
                        const REAL *a0 = Ab + 2 * (m * sam + k * sak), *a1 = a0 + 2 * sam;
                        const REAL a0r = a0[0], a0i = sa * a0[1], a1r = a1[0], a1i = sa * a1[1];
                        const REAL *rr = br + k * N + n0, *ri = bi + k * N + n0;
#pragma omp simd
                        for (zidx n = 0; n < CHUNK; n++) {
                            const REAL xr = n < w ? rr[n] : 0, xi = n < w ? ri[n] : 0;
                            r0[n] += a0r * xr - a0i * xi;
                            i0[n] += a0r * xi + a0i * xr;
                            r1[n] += a1r * xr - a1i * xi;
                            i1[n] += a1r * xi + a1i * xr;
                        }
                    }
                    REAL *c0 = Cb + 2 * (m * N + n0), *c1 = c0 + 2 * N;
                    for (zidx n = 0; n < w; n++) {
                        c0[2 * n] = r0[n];
                        c0[2 * n + 1] = i0[n];
                        c1[2 * n] = r1[n];
                        c1[2 * n + 1] = i1[n];
                    }
                }
                for (; m < M; m++) {
                    REAL r0[CHUNK] = {0}, i0[CHUNK] = {0};
                    for (zidx k = 0; k < K; k++) {
                        const REAL *a0 = Ab + 2 * (m * sam + k * sak);
                        const REAL a0r = a0[0], a0i = sa * a0[1];
                        const REAL *rr = br + k * N + n0, *ri = bi + k * N + n0;
#pragma omp simd
                        for (zidx n = 0; n < CHUNK; n++) {
                            const REAL xr = n < w ? rr[n] : 0, xi = n < w ? ri[n] : 0;
                            r0[n] += a0r * xr - a0i * xi;
                            i0[n] += a0r * xi + a0i * xr;
                        }
                    }
                    REAL *c0 = Cb + 2 * (m * N + n0);
                    for (zidx n = 0; n < w; n++) {
                        c0[2 * n] = r0[n];
                        c0[2 * n + 1] = i0[n];
                    }
                }
            }
        }
    }
    free(scratch);
    return 0;
}
