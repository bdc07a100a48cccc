/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's shared state (uring_srv) and its clock: the leaf every daemon file may use. */
#include "uring_server.h"

#include <time.h>

struct uring_server uring_srv;

double uring_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
