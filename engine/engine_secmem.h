/* SPDX-License-Identifier: Apache-2.0 */
/* The one allocator for key material and other secrets: locked, kept out of core dumps, wiped. */
#ifndef ENGINE_SECMEM_H
#define ENGINE_SECMEM_H

#include <stddef.h>

/*
 * engine_secmem_alloc: n zeroed bytes, 64-byte aligned, in their own pages, mlock()ed (best
 * effort: if RLIMIT_MEMLOCK refuses, the memory is still usable and engine_secmem_lock_failures()
 * counts it) and marked MADV_DONTDUMP. Returns NULL when out of memory.
 * engine_secmem_free: wipes all n bytes, unlocks and unmaps. NULL is allowed.
 */
void *engine_secmem_alloc(size_t n);
void engine_secmem_free(void *p);

/* How many allocations could not be locked in memory since the process started. */
unsigned long engine_secmem_lock_failures(void);

/*
 * hook(len) is called once per process, for the first allocation (len bytes) that mlock refused
 * (RLIMIT_MEMLOCK): on the allocating thread, or at once on the caller's when a refusal happened
 * before the hook was set. It must not block or allocate secure memory. NULL removes it.
 */
void engine_secmem_set_lock_failure_hook(void (*hook)(size_t len));

/*
 * Harden the process before the first key is loaded: no core dumps (RLIMIT_CORE = 0) and not
 * dumpable, so no other process of the same user can ptrace it or read its memory.
 * Returns 0, or a negative COFFER_ERR_* if either setting was refused.
 */
int engine_secmem_harden_process(void);

/* Wipe n bytes in a way the compiler cannot elide. */
void engine_secmem_wipe(void *p, size_t n);

#endif
