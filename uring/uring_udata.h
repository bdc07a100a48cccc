/* SPDX-License-Identifier: Apache-2.0 */
/* The one place that packs an operation, a connection slot and its generation into user_data. */
#ifndef URING_UDATA_H
#define URING_UDATA_H

#include <stdint.h>

enum uring_op {
    URING_OP_ACCEPT = 1,
    URING_OP_RECV = 2,
    URING_OP_SEND = 3,
    URING_OP_FREAD = 4,
    URING_OP_FSYNC = 5,
    URING_OP_EVENT = 6,
    URING_OP_TICK = 7,
    URING_OP_CANCEL = 8,
    URING_OP_FWRITE = 16,     /* a write of a descriptor job's output buffer op - URING_OP_FWRITE */
    URING_OP_FWRITE_END = 32, /* (room for 16 output buffers) */
};

/*
 * op: 8 bits | slot: 24 bits | generation: 32 bits. Pure functions of their arguments (any
 * thread); a slot above 24 bits is cut, so callers keep slots below 2^24 (max connections).
 */
static inline uint64_t uring_udata_pack(enum uring_op op, uint32_t slot, uint32_t gen)
{
    return (uint64_t)op << 56 | (uint64_t)(slot & 0xffffffu) << 32 | gen;
}

static inline enum uring_op uring_udata_op(uint64_t ud)
{
    return (enum uring_op)(ud >> 56);
}

static inline uint32_t uring_udata_slot(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xffffffu;
}

static inline uint32_t uring_udata_gen(uint64_t ud)
{
    return (uint32_t)ud;
}

#endif
