/* The outer strategy of the channel-wise message product, fused, on the CPU (complex data).
 *
 * Compiled with full_cg.c (see so3net/kernels/native/build.py); the driver includes this file once
 * per (REAL, SUFFIX). For the rows i < N of a padded neighbour list (slot k < d of row i holds
 * source node src[i, k], or a value outside [0, n) for an empty slot) and every channel c < C, with
 * the edge operand in factored form E[i, k, a, c] = s[i, k, l(a), c] Y[i, k, a] (a = (l, m), l(a) = l:
 * Cormorant's Υ = scalars ⊗ spherical harmonics, never stored):
 *
 *   S[a, b]    = sum_k E[i, k, a, c] N[src[i, k], b, c]          (a < D1 = L1², b < D2: the outer products, summed)
 *   z[i, r, c] = sum_{terms t of row r} w_t S[a_t, b_t]          (r < K: the sparse CG contraction W)
 *
 * and the gradients of a real loss (torch's convention for complex tensors; W is real):
 *
 *   gS[a, b]           = sum_{terms t with (a_t, b_t) = (a, b)} w_t gz[i, r_t, c]
 *   gE[i, k, a, c]     = sum_b gS[a, b] conj(N[src[i, k], b, c])      (0 in empty slots)
 *   gs[i, k, l, c]     = sum_{a of degree l} gE[i, k, a, c] conj(Y[i, k, a])
 *   gY[i, k, a]        = sum_c gE[i, k, a, c] conj(s[i, k, l(a), c])
 *   gN[src[i,k], b, c] += sum_a conj(E[i, k, a, c]) gS[a, b]
 *
 * S, gS (and its transpose), E and one slot's gE live in a thread's scratch. Layouts (complex interleaved (re, im), element offsets):
 * s (N, d, L1, C), Y (N, d, D1), N (n, D2, C) [packed node features], z (N, K, C) [the packed
 * output], src (N, d) int64; W: rows [wrow[r], wrow[r+1]) of terms with column col[t] = a_t D2 + b_t
 * (W's column) and coefficient w[t] (D2p, D1p below: D2, D1 rounded up to 16). The scratch is planar:
 * row a of S holds D2p real parts then D2p imaginary parts; node rows are made planar (n, C,
 * {re, im}, D2p) once per call. Inner loops run on GCC vectors of the widest width the compiler
 * targets, their sums in registers: over the slots for four rows of S at once (forward), over b
 * for one slot's gE (from the transposed gS), over a for one slot's gN (added to the thread's
 * buffer once per slot); real and imaginary terms go to separate sums, so that the FMA chains
 * are independent. Rows i are split over OpenMP threads; in the backward each thread sums its node gradients in a
 * private buffer (as many threads as such buffers fit in 512 MiB), added up at the end. Each function
 * returns 0, or 1 when scratch memory could not be allocated.
 */
#ifndef SO3NET_PADDED_MSG
#define SO3NET_PADDED_MSG
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "private_buffers.h"
typedef int64_t pidx;
#define PCAT_(a, b) a##_##b
#define PCAT(a, b) PCAT_(a, b)
#define PMSG_PAD(n) (((n) + 15) / 16 * 16)
#define PMSG_PAD4(n) (((n) + 3) / 4 * 4)
#if defined(__AVX512F__)
#define PMSG_VBYTES 64
#elif defined(__AVX__)
#define PMSG_VBYTES 32
#else
#define PMSG_VBYTES 16
#endif
#endif

typedef REAL PCAT(pvec, SUFFIX) __attribute__((vector_size(PMSG_VBYTES), aligned(sizeof(REAL)), may_alias));
#define PV PCAT(pvec, SUFFIX)
#define PVW ((pidx)(PMSG_VBYTES / sizeof(REAL)))
#define PLOAD(p) (*(const PV *)(p))
#define PSTORE(p, v) (*(PV *)(p) = (v))

/* Node features (n, D2, C) interleaved -> planar (n, C, {re, im}, D2p), zero-padded. */
static void PCAT(pmsg_planar, SUFFIX)(pidx n, pidx D2, pidx D2p, pidx C, const REAL *node, REAL *np, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (pidx j = 0; j < n; ++j)
        for (pidx c = 0; c < C; ++c) {
            REAL *re = np + (j * C + c) * 2 * D2p, *im = re + D2p;
            for (pidx b = 0; b < D2p; ++b) {
                re[b] = b < D2 ? node[2 * ((j * D2 + b) * C + c)] : 0;
                im[b] = b < D2 ? node[2 * ((j * D2 + b) * C + c) + 1] : 0;
            }
        }
}

/* The occupied slots of row i: their slot numbers and source nodes; returns how many. */
static inline pidx PCAT(pmsg_slots, SUFFIX)(const pidx *src, pidx i, pidx d, pidx n, pidx *ks, pidx *js)
{
    pidx m = 0;
    for (pidx k = 0; k < d; ++k) {
        const pidx j = src[i * d + k];
        if (j >= 0 && j < n) { ks[m] = k; js[m] = j; ++m; }
    }
    return m;
}

/* E[a][q] (interleaved) of channel c for the occupied slots ks[0..m) of row i: s[i, k, l(a), c] Y[i, k, a]. */
static inline void PCAT(pmsg_edge, SUFFIX)(const REAL *s, const REAL *Y, pidx i, pidx d, pidx L1, pidx C, pidx c,
                                           const pidx *ks, pidx m, REAL *Et)
{
    const pidx D1 = L1 * L1;
    for (pidx l = 0, a = 0; l < L1; ++l)
        for (pidx mm = 0; mm < 2 * l + 1; ++mm, ++a)
            for (pidx q = 0; q < m; ++q) {
                const pidx k = ks[q];
                const REAL *sv = s + 2 * (((i * d + k) * L1 + l) * C + c), *yv = Y + 2 * ((i * d + k) * D1 + a);
                Et[2 * (a * m + q)] = sv[0] * yv[0] - sv[1] * yv[1];
                Et[2 * (a * m + q) + 1] = sv[0] * yv[1] + sv[1] * yv[0];
            }
    memset(Et + 2 * D1 * m, 0, sizeof(REAL) * (size_t)(2 * (PMSG_PAD4(D1) - D1) * m));   /* rows up to a multiple of 4 */
}

int PCAT(padded_msg_forward, SUFFIX)(pidx N, pidx d, pidx C, pidx L1, pidx D2, pidx n, pidx K,
                                      const REAL *sc, const REAL *Y, const REAL *node, const pidx *src,
                                      const pidx *wrow, const pidx *coff, const REAL *w, REAL *z, int threads)
{
    const pidx D1 = L1 * L1, D2p = PMSG_PAD(D2), NV = D2p / PVW;
    REAL *np = malloc(sizeof(REAL) * (size_t)(n * C * 2 * D2p + 1));
    if (!np) return 1;
    PCAT(pmsg_planar, SUFFIX)(n, D2, D2p, C, node, np, threads);
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        REAL *S = aligned_alloc(64, sizeof(REAL) * (size_t)(D1 * 2 * D2p));
        REAL *Sall = malloc(sizeof(REAL) * (size_t)(2 * D1 * D2 * C + 1));      /* S of every channel, [a][b][c] */
        REAL *Et = malloc(sizeof(REAL) * (size_t)(2 * PMSG_PAD4(D1) * d + 1));
        pidx *ks = malloc(sizeof(pidx) * (size_t)(2 * d + 2)), *js = ks ? ks + d + 1 : NULL;
        const int ok = S && Sall && Et && ks;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (pidx i = 0; i < N; ++i) {
            if (!ok) continue;
            const pidx m = PCAT(pmsg_slots, SUFFIX)(src, i, d, n, ks, js);
            for (pidx c = 0; c < C; ++c) {
                PCAT(pmsg_edge, SUFFIX)(sc, Y, i, d, L1, C, c, ks, m, Et);
                for (pidx a0 = 0; a0 < D1; a0 += 4) {          /* rows a0..a0+3 (Et zero-padded), one vector at a time */
                    const REAL *ea = Et + 2 * a0 * m;
                    for (pidx v = 0; v < NV; ++v) {
                        PV pr[4] = {0}, mr[4] = {0}, pi[4] = {0}, mi[4] = {0};
                        for (pidx q = 0; q < m; ++q) {
                            const REAL *nr = np + (js[q] * C + c) * 2 * D2p + v * PVW;
                            const PV xr = PLOAD(nr), xi = PLOAD(nr + D2p);
                            for (int t = 0; t < 4; ++t) {
                                const REAL er = ea[2 * (t * m + q)], ei = ea[2 * (t * m + q) + 1];
                                pr[t] += er * xr;
                                mr[t] += ei * xi;
                                pi[t] += er * xi;
                                mi[t] += ei * xr;
                            }
                        }
                        for (int t = 0; t < 4 && a0 + t < D1; ++t) {
                            PSTORE(S + (a0 + t) * 2 * D2p + v * PVW, pr[t] - mr[t]);
                            PSTORE(S + (a0 + t) * 2 * D2p + D2p + v * PVW, pi[t] + mi[t]);
                        }
                    }
                }
                for (pidx a = 0; a < D1; ++a)                  /* into the channel-interleaved scratch */
                    for (pidx b = 0; b < D2; ++b) {
                        Sall[2 * ((a * D2 + b) * C + c)] = S[a * 2 * D2p + b];
                        Sall[2 * ((a * D2 + b) * C + c) + 1] = S[a * 2 * D2p + D2p + b];
                    }
            }
            REAL *zi = z + 2 * i * K * C;                       /* z[i, r, :] = sum_t w_t S[a_t, b_t, :], all channels */
            memset(zi, 0, sizeof(REAL) * (size_t)(2 * K * C));
            for (pidx r = 0; r < K; ++r) {
                REAL *zr = zi + 2 * r * C;
                for (pidx t = wrow[r]; t < wrow[r + 1]; ++t) {
                    const REAL wt = w[t], *st = Sall + 2 * coff[t] * C;
#pragma omp simd
                    for (pidx e = 0; e < 2 * C; ++e) zr[e] += wt * st[e];
                }
            }
        }
        free(S);
        free(Sall);
        free(Et);
        free(ks);
    }
    free(np);
    return failed;
}

int PCAT(padded_msg_backward, SUFFIX)(pidx N, pidx d, pidx C, pidx L1, pidx D2, pidx n, pidx K,
                                       const REAL *gz, const REAL *sc, const REAL *Y, const REAL *node,
                                       const pidx *src, const pidx *wrow, const pidx *coff, const REAL *w,
                                       REAL *gs, REAL *gY, REAL *gnode, int threads)
{
    const pidx D1 = L1 * L1, D2p = PMSG_PAD(D2), D1p = PMSG_PAD(D1), NV2 = D2p / PVW, NV1 = D1p / PVW;
    const pidx nodesize = n * C * 2 * D2p, terms = wrow[K];
    const int T = SO3NET_BUFFER_THREADS(threads, nodesize * sizeof(REAL)), edge = gs || gY;
    REAL *np = NULL, *acc = NULL;   /* planar nodes (for gs, gY); per-thread planar node gradients (for gN) */
    if (edge) {
        np = malloc(sizeof(REAL) * (size_t)(nodesize + 1));
        if (!np) return 1;
        PCAT(pmsg_planar, SUFFIX)(n, D2, D2p, C, node, np, threads);
    }
    if (gnode) {
        acc = calloc((size_t)T * (size_t)nodesize + 1, sizeof(REAL));
        if (!acc) { free(np); return 1; }
    }
    int failed = 0;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        REAL *gS = aligned_alloc(64, sizeof(REAL) * (size_t)(PMSG_PAD4(D1) * 2 * D2p));   /* [a][re|im][b], zero rows to a multiple of 4 */
        REAL *gT = aligned_alloc(64, sizeof(REAL) * (size_t)(D2 * 2 * D1p));      /* [b][re|im][a] */
        REAL *col = aligned_alloc(64, sizeof(REAL) * (size_t)(2 * D1p));          /* gE of one slot, planar */
        REAL *gSall = calloc((size_t)(2 * D1 * D2 * C + 1), sizeof(REAL));          /* gS of every channel, [a][b][c] */
        REAL *Et = malloc(sizeof(REAL) * (size_t)(2 * PMSG_PAD4(D1) * d + 1));
        pidx *ks = malloc(sizeof(pidx) * (size_t)(2 * d + 2)), *js = ks ? ks + d + 1 : NULL;
        const int ok = gS && gT && col && gSall && Et && ks;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        REAL *mine = acc ? acc + (size_t)me * (size_t)nodesize : NULL;
#pragma omp for schedule(static)
        for (pidx i = 0; i < N; ++i) {
            if (!ok) continue;
            const pidx m = PCAT(pmsg_slots, SUFFIX)(src, i, d, n, ks, js);
            if (gs) memset(gs + 2 * i * d * L1 * C, 0, sizeof(REAL) * (size_t)(2 * d * L1 * C));   /* empty slots: 0 */
            if (gY) memset(gY + 2 * i * d * D1, 0, sizeof(REAL) * (size_t)(2 * d * D1));
            for (pidx r = 0; r < K; ++r) {                     /* gS[a, b, :] = sum_t w_t gz[i, r_t, :], all channels */
                const REAL *gr = gz + 2 * (i * K + r) * C;
                for (pidx t = wrow[r]; t < wrow[r + 1]; ++t) {
                    const REAL wt = w[t];
                    REAL *dst = gSall + 2 * coff[t] * C;
#pragma omp simd
                    for (pidx e = 0; e < 2 * C; ++e) dst[e] += wt * gr[e];
                }
            }
            for (pidx c = 0; c < C; ++c) {                      /* channel c's gS planar, and transposed */
                if (gnode) {
                    memset(gS, 0, sizeof(REAL) * (size_t)(PMSG_PAD4(D1) * 2 * D2p));
                    for (pidx a = 0; a < D1; ++a)
                        for (pidx b = 0; b < D2; ++b) {
                            gS[a * 2 * D2p + b] = gSall[2 * ((a * D2 + b) * C + c)];
                            gS[a * 2 * D2p + D2p + b] = gSall[2 * ((a * D2 + b) * C + c) + 1];
                        }
                }
                if (edge) {
                    memset(gT, 0, sizeof(REAL) * (size_t)(D2 * 2 * D1p));
                    for (pidx a = 0; a < D1; ++a)
                        for (pidx b = 0; b < D2; ++b) {
                            gT[b * 2 * D1p + a] = gSall[2 * ((a * D2 + b) * C + c)];
                            gT[b * 2 * D1p + D1p + a] = gSall[2 * ((a * D2 + b) * C + c) + 1];
                        }
                }
                if (gnode) PCAT(pmsg_edge, SUFFIX)(sc, Y, i, d, L1, C, c, ks, m, Et);
                for (pidx q = 0; q < m; ++q) {
                    const pidx k = ks[q];
                    if (edge) {                                                     /* gE_k = gS conj(N_k) */
                        const REAL *nr = np + (js[q] * C + c) * 2 * D2p, *ni = nr + D2p;
                        for (pidx v = 0; v < NV1; ++v) {              /* b in pairs: eight independent sums */
                            PV r0 = {0}, r1 = {0}, r2 = {0}, r3 = {0}, i0 = {0}, i1 = {0}, i2 = {0}, i3 = {0};
                            pidx b = 0;
                            for (; b + 1 < D2; b += 2) {
                                const REAL *t0 = gT + b * 2 * D1p + v * PVW, *t1 = t0 + 2 * D1p;
                                const PV h0r = PLOAD(t0), h0i = PLOAD(t0 + D1p), h1r = PLOAD(t1), h1i = PLOAD(t1 + D1p);
                                r0 += h0r * nr[b];
                                r1 += h0i * ni[b];
                                i0 += h0i * nr[b];
                                i1 += h0r * ni[b];
                                r2 += h1r * nr[b + 1];
                                r3 += h1i * ni[b + 1];
                                i2 += h1i * nr[b + 1];
                                i3 += h1r * ni[b + 1];
                            }
                            if (b < D2) {
                                const REAL *t0 = gT + b * 2 * D1p + v * PVW;
                                const PV h0r = PLOAD(t0), h0i = PLOAD(t0 + D1p);
                                r0 += h0r * nr[b];
                                r1 += h0i * ni[b];
                                i0 += h0i * nr[b];
                                i1 += h0r * ni[b];
                            }
                            PSTORE(col + v * PVW, (r0 + r1) + (r2 + r3));
                            PSTORE(col + D1p + v * PVW, (i0 - i1) + (i2 - i3));
                        }
                        const REAL *yk = Y + 2 * (i * d + k) * D1;
                        for (pidx l = 0, a = 0; l < L1; ++l) {
                            const REAL *sv = sc + 2 * (((i * d + k) * L1 + l) * C + c);
                            REAL re = 0, im = 0;
                            for (pidx mm = 0; mm < 2 * l + 1; ++mm, ++a) {
                                const REAL gr = col[a], gi = col[D1p + a], yr = yk[2 * a], yi = yk[2 * a + 1];
                                re += gr * yr + gi * yi;                            /* gE conj(Y) */
                                im += gi * yr - gr * yi;
                                if (gY) {                                           /* gE conj(s) */
                                    REAL *gy = gY + 2 * ((i * d + k) * D1 + a);
                                    gy[0] += gr * sv[0] + gi * sv[1];
                                    gy[1] += gi * sv[0] - gr * sv[1];
                                }
                            }
                            if (gs) {
                                REAL *o = gs + 2 * (((i * d + k) * L1 + l) * C + c);
                                o[0] = re;
                                o[1] = im;
                            }
                        }
                    }
                    if (gnode) {                                                    /* gN_j += sum_a conj(E_ak) gS_a */
                        REAL *ar = mine + (js[q] * C + c) * 2 * D2p, *ai = ar + D2p;
                        for (pidx v = 0; v < NV2; ++v) {              /* a in pairs (rows zero-padded): eight sums */
                            PV r0 = PLOAD(ar + v * PVW), i0 = PLOAD(ai + v * PVW);
                            PV r1 = {0}, r2 = {0}, r3 = {0}, i1 = {0}, i2 = {0}, i3 = {0};
                            for (pidx a = 0; a < D1; a += 2) {
                                const REAL e0r = Et[2 * (a * m + q)], e0i = Et[2 * (a * m + q) + 1];
                                const REAL e1r = Et[2 * ((a + 1) * m + q)], e1i = Et[2 * ((a + 1) * m + q) + 1];
                                const REAL *h0 = gS + a * 2 * D2p + v * PVW, *h1 = h0 + 2 * D2p;
                                const PV y0r = PLOAD(h0), y0i = PLOAD(h0 + D2p), y1r = PLOAD(h1), y1i = PLOAD(h1 + D2p);
                                r0 += e0r * y0r;                             /* conj(e) y */
                                r1 += e0i * y0i;
                                i0 += e0r * y0i;
                                i1 += e0i * y0r;
                                r2 += e1r * y1r;
                                r3 += e1i * y1i;
                                i2 += e1r * y1i;
                                i3 += e1i * y1r;
                            }
                            PSTORE(ar + v * PVW, (r0 + r1) + (r2 + r3));
                            PSTORE(ai + v * PVW, (i0 - i1) + (i2 - i3));
                        }
                    }
                }
            }
            for (pidx t = 0; t < terms; ++t)                    /* the scratch back to zeros (only these were touched) */
                memset(gSall + 2 * coff[t] * C, 0, sizeof(REAL) * (size_t)(2 * C));
        }
        free(gS);
        free(gT);
        free(gSall);
        free(col);
        free(Et);
        free(ks);
    }
    if (gnode && !failed) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (pidx j = 0; j < n; ++j)
            for (pidx c = 0; c < C; ++c)
                for (pidx b = 0; b < D2; ++b) {
                    REAL re = 0, im = 0;
                    for (int t = 0; t < T; ++t) {
                        const REAL *p = acc + (size_t)t * (size_t)nodesize + (j * C + c) * 2 * D2p;
                        re += p[b];
                        im += p[D2p + b];
                    }
                    gnode[2 * ((j * D2 + b) * C + c)] = re;
                    gnode[2 * ((j * D2 + b) * C + c) + 1] = im;
                }
    }
    free(acc);
    free(np);
    return failed;
}
#undef PV
#undef PVW
#undef PLOAD
#undef PSTORE
