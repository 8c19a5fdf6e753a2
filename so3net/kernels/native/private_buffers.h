/* Shared by padded_msg.c and pair_dots.c: backwards that sum node gradients in one private buffer
 * per OpenMP thread. SO3NET_BUFFER_THREADS(threads, bytes): the threads to use when each buffer
 * takes `bytes`: at most `threads`, and no more than fit in 512 MiB together (large systems on many
 * cores run on fewer threads). */
#ifndef SO3NET_PRIVATE_BUFFERS_H
#define SO3NET_PRIVATE_BUFFERS_H
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#define SO3NET_BUFFER_BUDGET ((size_t)512 << 20)
#define SO3NET_BUFFER_THREADS(threads, bytes) ((int)((threads) <= 1 ? 1 \
    : (size_t)(threads) * (size_t)(bytes) <= SO3NET_BUFFER_BUDGET ? (size_t)(threads) \
    : SO3NET_BUFFER_BUDGET / (size_t)(bytes) > 1 ? SO3NET_BUFFER_BUDGET / (size_t)(bytes) : 1))
#endif
