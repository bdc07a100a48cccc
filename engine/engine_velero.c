/* SPDX-License-Identifier: Apache-2.0 */
/* velero-v1 seal, and open by spool-and-verify-then-release (no plaintext before the tag). */
#include "engine_velero.h"

#include "coffer_error.h"
#include "engine_secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NONCE   ENGINE_VELERO_NONCE
#define TAG     ENGINE_VELERO_TAG
#define SCRATCH (64u * 1024u)       /* first-pass plaintext, wiped: it is never released */
#define MAX_MSG ((1ull << 36) - 32) /* GCM's limit for one message */

enum velero_state { ST_RUN, ST_DRAIN, ST_DONE, ST_FAILED };

struct engine_velero {
    engine_gcm *gcm;
    int sealing;
    enum velero_state state;
    int err;
    uint8_t nonce[NONCE];
    size_t nonce_have;
    uint8_t tail[TAG]; /* opening: the last TAG bytes seen, which may be the tag */
    size_t tail_have;
    uint64_t body; /* ciphertext bytes (sealing: produced; opening: spooled) */
    /* opening: the spool of ciphertext, in memory up to mem_cap, then in a file */
    uint8_t *mem;
    size_t mem_cap;
    int fd;
    char *spool_dir;
    uint64_t drained;
    uint8_t *scratch;
    char spool_error[512];
};

static const char *spool_dir_of(const engine_velero *v)
{
    const char *dir = v->spool_dir;
    if (dir == NULL)
        dir = getenv("TMPDIR");
    return dir == NULL || dir[0] == '\0' ? "/tmp" : dir;
}

/* Remember why the spool failed (directory and errno) and return the matching code. */
static int spool_err(engine_velero *v, int code)
{
    snprintf(v->spool_error, sizeof(v->spool_error),
             "spool in %s: %s; set --spool-dir or TMPDIR "
             "to a directory with room for the whole archive",
             spool_dir_of(v), strerror(errno));
    return code;
}

const char *engine_velero_spool_error(const engine_velero *v)
{
    return v->spool_error;
}

int engine_velero_seal_new(engine_velero **out, engine_gcm_backend backend, const uint8_t *key,
                           size_t keylen)
{
    int r;
    engine_velero *v = calloc(1, sizeof(*v));
    *out = NULL;
    if (v == NULL)
        return COFFER_ERR_NOMEM;
    v->sealing = 1;
    v->fd = -1;
    if ((r = engine_gcm_new(&v->gcm, backend, key, keylen)) != 0)
        goto fail;
    if (RAND_bytes(v->nonce, NONCE) != 1) {
        r = COFFER_ERR_INTERNAL;
        goto fail;
    }
    if ((r = engine_gcm_start(v->gcm, 1, v->nonce, NONCE, NULL, 0)) != 0)
        goto fail;
    *out = v;
    return 0;
fail:
    engine_velero_free(v);
    return r;
}

int engine_velero_open_new(engine_velero **out, engine_gcm_backend backend, const uint8_t *key,
                           size_t keylen, const char *spool_dir, size_t spool_mem)
{
    int r = COFFER_ERR_NOMEM;
    engine_velero *v = calloc(1, sizeof(*v));
    *out = NULL;
    if (v == NULL)
        return COFFER_ERR_NOMEM;
    v->fd = -1;
    v->mem_cap = spool_mem;
    if (spool_mem > 0 && (v->mem = malloc(spool_mem)) == NULL)
        goto fail;
    if ((v->scratch = engine_secmem_alloc(SCRATCH)) == NULL)
        goto fail;
    if (spool_dir != NULL && (v->spool_dir = strdup(spool_dir)) == NULL)
        goto fail;
    if ((r = engine_gcm_new(&v->gcm, backend, key, keylen)) != 0)
        goto fail;
    *out = v;
    return 0;
fail:
    engine_velero_free(v);
    return r;
}

void engine_velero_free(engine_velero *v)
{
    if (v == NULL)
        return;
    engine_gcm_free(v->gcm);
    if (v->fd >= 0)
        close(v->fd);
    free(v->mem);
    free(v->spool_dir);
    engine_secmem_free(v->scratch);
    OPENSSL_cleanse(v, sizeof(*v));
    free(v);
}

size_t engine_velero_bound(size_t inlen)
{
    return inlen + NONCE + TAG;
}

static int velero_fail(engine_velero *v, int err)
{
    v->state = ST_FAILED;
    v->err = err;
    return err;
}

/* Open the spool file: an unlinked temporary file only this process can reach. */
static int spool_open(engine_velero *v)
{
    const char *dir = spool_dir_of(v);
    v->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC | O_EXCL, 0600);
    if (v->fd < 0) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/coffer-spool.XXXXXX", dir);
        v->fd = mkostemp(path, O_CLOEXEC);
        if (v->fd < 0)
            return spool_err(v, COFFER_ERR_SPOOL);
        (void)unlink(path);
    }
    return 0;
}

/* Append ciphertext to the spool (memory first, then the file). */
static int spool_write(engine_velero *v, const uint8_t *p, size_t n)
{
    while (n > 0 && v->body < v->mem_cap) {
        size_t take = v->mem_cap - v->body < n ? v->mem_cap - v->body : n;
        memcpy(v->mem + v->body, p, take);
        v->body += take;
        p += take;
        n -= take;
    }
    if (n > 0 && v->fd < 0) {
        int r = spool_open(v);
        if (r != 0)
            return r;
    }
    while (n > 0) {
        ssize_t w = pwrite(v->fd, p, n, (off_t)(v->body - v->mem_cap));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return spool_err(v, errno == ENOSPC || errno == EDQUOT ? COFFER_ERR_NOSPACE
                                                                   : COFFER_ERR_SPOOL);
        v->body += (uint64_t)w;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Opening, first pass: spool ciphertext and run it through GCM only to compute the tag. */
static int open_body(engine_velero *v, const uint8_t *p, size_t n)
{
    int r;
    if (v->body + n > MAX_MSG)
        return COFFER_ERR_TOO_LARGE;
    if ((r = spool_write(v, p, n)) != 0)
        return r;
    while (n > 0) {
        size_t take = n < SCRATCH ? n : SCRATCH;
        if ((r = engine_gcm_update(v->gcm, p, take, v->scratch)) != 0)
            return r;
        p += take;
        n -= take;
    }
    return 0;
}

static int open_update(engine_velero *v, const uint8_t *in, size_t inlen)
{
    int r;
    if (v->nonce_have < NONCE) {
        size_t take = NONCE - v->nonce_have < inlen ? NONCE - v->nonce_have : inlen;
        memcpy(v->nonce + v->nonce_have, in, take);
        v->nonce_have += take;
        in += take;
        inlen -= take;
        if (v->nonce_have < NONCE)
            return 0;
        if ((r = engine_gcm_start(v->gcm, 0, v->nonce, NONCE, NULL, 0)) != 0)
            return r;
    }
    if (inlen == 0)
        return 0;
    /* Everything but the last TAG bytes seen so far is ciphertext. */
    if (inlen >= TAG) {
        if (v->tail_have > 0 && (r = open_body(v, v->tail, v->tail_have)) != 0)
            return r;
        if ((r = open_body(v, in, inlen - TAG)) != 0)
            return r;
        memcpy(v->tail, in + inlen - TAG, TAG);
        v->tail_have = TAG;
        return 0;
    }
    size_t excess = v->tail_have + inlen > TAG ? v->tail_have + inlen - TAG : 0;
    if (excess > 0) {
        if ((r = open_body(v, v->tail, excess)) != 0)
            return r;
        memmove(v->tail, v->tail + excess, v->tail_have - excess);
        v->tail_have -= excess;
    }
    memcpy(v->tail + v->tail_have, in, inlen);
    v->tail_have += inlen;
    return 0;
}

int engine_velero_update(engine_velero *v, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t outcap, size_t *outlen)
{
    int r;
    *outlen = 0;
    if (v->state == ST_FAILED)
        return v->err;
    if (v->state != ST_RUN)
        return inlen > 0 ? velero_fail(v, COFFER_ERR_TRAILING) : COFFER_ERR_STATE;
    if (inlen == 0)
        return 0;
    if (!v->sealing)
        return (r = open_update(v, in, inlen)) != 0 ? velero_fail(v, r) : 0;
    if (outcap < engine_velero_bound(inlen))
        return COFFER_ERR_INVALID_ARG;
    size_t o = 0;
    if (v->nonce_have == 0) {
        memcpy(out, v->nonce, NONCE);
        v->nonce_have = NONCE;
        o = NONCE;
    }
    if (v->body + inlen > MAX_MSG)
        return velero_fail(v, COFFER_ERR_TOO_LARGE);
    if ((r = engine_gcm_update(v->gcm, in, inlen, out + o)) != 0)
        return velero_fail(v, r);
    v->body += inlen;
    *outlen = o + inlen;
    return 0;
}

int engine_velero_final(engine_velero *v, uint8_t *out, size_t outcap, size_t *outlen)
{
    int r;
    *outlen = 0;
    if (v->state == ST_FAILED)
        return v->err;
    if (v->state != ST_RUN)
        return COFFER_ERR_STATE;
    if (v->sealing) {
        size_t o = 0;
        if (outcap < NONCE + TAG)
            return COFFER_ERR_INVALID_ARG;
        if (v->nonce_have == 0) {
            memcpy(out, v->nonce, NONCE);
            v->nonce_have = NONCE;
            o = NONCE;
        }
        if ((r = engine_gcm_finish_tag(v->gcm, out + o, TAG)) != 0)
            return velero_fail(v, r);
        *outlen = o + TAG;
        v->state = ST_DONE;
        return 0;
    }
    if (v->nonce_have < NONCE || v->tail_have < TAG)
        return velero_fail(v, COFFER_ERR_TRUNCATED);
    OPENSSL_cleanse(v->scratch, SCRATCH);
    if ((r = engine_gcm_finish_verify(v->gcm, v->tail, TAG)) != 0)
        return velero_fail(v, r);
    /* Authentic: the second pass decrypts the spool again, now for release. */
    if ((r = engine_gcm_start(v->gcm, 0, v->nonce, NONCE, NULL, 0)) != 0)
        return velero_fail(v, r);
    v->drained = 0;
    v->state = ST_DRAIN;
    return 0;
}

int engine_velero_drain(engine_velero *v, uint8_t *out, size_t outcap, size_t *outlen)
{
    int r;
    *outlen = 0;
    if (v->state == ST_FAILED)
        return v->err;
    if (v->sealing || v->state == ST_DONE)
        return 0;
    if (v->state != ST_DRAIN)
        return COFFER_ERR_STATE;
    if (v->drained == v->body) {
        /* The spool was re-read: check it was not changed underneath us. */
        if ((r = engine_gcm_finish_verify(v->gcm, v->tail, TAG)) != 0)
            return velero_fail(v, r);
        v->state = ST_DONE;
        return 0;
    }
    size_t n = v->body - v->drained < outcap ? (size_t)(v->body - v->drained) : outcap;
    size_t got = 0;
    if (v->drained < v->mem_cap) {
        got = v->mem_cap - v->drained < n ? (size_t)(v->mem_cap - v->drained) : n;
        memcpy(out, v->mem + v->drained, got);
    } else {
        ssize_t rd;
        do
            rd = pread(v->fd, out, n, (off_t)(v->drained - v->mem_cap));
        while (rd < 0 && errno == EINTR);
        if (rd <= 0)
            return velero_fail(v, spool_err(v, COFFER_ERR_SPOOL));
        got = (size_t)rd;
    }
    if ((r = engine_gcm_update(v->gcm, out, got, out)) != 0)
        return velero_fail(v, r);
    v->drained += got;
    *outlen = got;
    return 0;
}
