/* SPDX-License-Identifier: Apache-2.0 */
/* Large I/O buffers as their own mappings: see uring_buf.h. */
#include "uring_buf.h"

#include <stdint.h>
#include <sys/mman.h>

/*
 * The mapping's first page holds its length (munmap needs it); the buffer starts on the next page,
 * so it keeps its page alignment and uring_buf_free takes just the pointer, as free() does.
 */
#define BUF_PAGE 4096u

void *uring_buf_alloc(size_t n)
{
    size_t total;
    uint8_t *m;

    if (n == 0 || n > SIZE_MAX - 2 * BUF_PAGE)
        return NULL;
    total = BUF_PAGE + ((n + BUF_PAGE - 1) & ~(size_t)(BUF_PAGE - 1));
    m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    *(size_t *)m = total;
    return m + BUF_PAGE;
}

void uring_buf_free(void *p)
{
    uint8_t *m;

    if (p == NULL)
        return;
    m = (uint8_t *)p - BUF_PAGE;
    munmap(m, *(size_t *)m);
}
