/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd's large I/O buffers (connection frame buffers, descriptor-job pieces), mapped from the
 * kernel one by one and unmapped when freed.
 *
 * Why not malloc: glibc serves such sizes from its per-thread arenas once its dynamic mmap
 * threshold has risen past them, and keeps the freed pages, so the daemon's RSS stayed tens of
 * MiB above its baseline after a burst of descriptor jobs (the soak test saw 20.8 MiB grow to
 * 41.6 MiB and stay at 38.6 MiB, malloc_trim included). A mapping goes back to the kernel on
 * free, and its pages are faulted in only where data lands.
 *
 * Why page-aligned: on AMD Zen 3/4 `rep movsb`, which the kernel's copy_to_user and glibc's
 * memcpy use for large copies, runs 4x slower when the destination is a few bytes past the
 * source's page offset: malloc's 16-byte header puts every large buffer there relative to the
 * page cache (reads into malloc'd buffers ran at 2 GB/s instead of 8).
 */
#ifndef URING_BUF_H
#define URING_BUF_H

#include <stddef.h>

/*
 * n bytes (n > 0), page-aligned and zero-filled, or NULL when the kernel refuses the mapping
 * (errno set). Any thread. The caller owns the buffer and gives it back with uring_buf_free.
 */
void *uring_buf_alloc(size_t n) __attribute__((warn_unused_result));

/* Unmap a buffer from uring_buf_alloc; NULL allowed. Any thread; never blocks on I/O. */
void uring_buf_free(void *p);

#endif
