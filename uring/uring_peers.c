/* SPDX-License-Identifier: Apache-2.0 */
/* Connections per peer uid, for --max-connections-per-uid: one small table shared by the workers. */
#include "uring_server.h"

#include <stdlib.h>

/* The uids holding connections now; an entry goes when its count drops to zero. */
static struct {
    uid_t uid;
    int count;
} *peers_tab;
static size_t peers_n, peers_cap;
static pthread_mutex_t peers_lock = PTHREAD_MUTEX_INITIALIZER;

int uring_peers_enter(uid_t uid, int max)
{
    int r = -1;
    size_t i;
    pthread_mutex_lock(&peers_lock);
    for (i = 0; i < peers_n && peers_tab[i].uid != uid; i++)
        ;
    if (i == peers_n) {
        if (peers_n == peers_cap) {
            size_t cap = peers_cap == 0 ? 64 : 2 * peers_cap;
            void *p = realloc(peers_tab, cap * sizeof(*peers_tab));
            if (p == NULL)
                goto out;
            peers_tab = p;
            peers_cap = cap;
        }
        peers_tab[peers_n].uid = uid;
        peers_tab[peers_n++].count = 0;
    }
    if (peers_tab[i].count < max) {
        peers_tab[i].count++;
        r = 0;
    }
out:
    pthread_mutex_unlock(&peers_lock);
    return r;
}

void uring_peers_leave(uid_t uid)
{
    pthread_mutex_lock(&peers_lock);
    for (size_t i = 0; i < peers_n; i++) {
        if (peers_tab[i].uid != uid)
            continue;
        if (--peers_tab[i].count == 0)
            peers_tab[i] = peers_tab[--peers_n];
        break;
    }
    pthread_mutex_unlock(&peers_lock);
}

void uring_peers_free(void)
{
    pthread_mutex_lock(&peers_lock);
    free(peers_tab);
    peers_tab = NULL;
    peers_n = peers_cap = 0;
    pthread_mutex_unlock(&peers_lock);
}
