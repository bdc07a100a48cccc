/* SPDX-License-Identifier: Apache-2.0 */
/* PIN files and PIN environment variables, read straight into engine_secmem and wiped after use. */
#include "hsm_pin.h"

#include "coffer_error.h"
#include "engine_secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read at most cap bytes of fd into buf; returns the count or -1 (errno set). */
static ssize_t read_bounded(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    return (ssize_t)n;
}

static int pin_read_file(const char *path, char *buf, size_t *len, hsm_status *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    ssize_t n;

    if (fd < 0)
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "pin", HSM_STATUS_NO_RV,
                              "the PIN file '%s' cannot be opened: %s", path, strerror(errno));
    /* One byte more than allowed (plus room for "\r\n") tells a too-long file from a full one. */
    n = read_bounded(fd, buf, HSM_PIN_MAX + 3);
    int saved = errno;
    close(fd);
    if (n < 0)
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "pin", HSM_STATUS_NO_RV,
                              "the PIN file '%s' cannot be read: %s", path, strerror(saved));
    size_t m = (size_t)n;
    if (m > 0 && buf[m - 1] == '\n')
        m--;
    if (m > 0 && buf[m - 1] == '\r')
        m--;
    engine_secmem_wipe(buf + m, (size_t)n - m);
    if (m == 0)
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "pin", HSM_STATUS_NO_RV,
                              "the PIN file '%s' is empty", path);
    if (m > HSM_PIN_MAX)
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "pin", HSM_STATUS_NO_RV,
                              "the PIN file '%s' holds more than %d bytes; it must hold only the "
                              "PIN",
                              path, HSM_PIN_MAX);
    *len = m;
    return 0;
}

static int pin_read_env(const char *name, char *buf, size_t *len, hsm_status *st)
{
    const char *v = getenv(name);
    size_t m;

    if (v == NULL || v[0] == '\0')
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "pin", HSM_STATUS_NO_RV,
                              "no PIN: the environment variable %s is not set and no PIN file "
                              "was given",
                              name);
    m = strnlen(v, HSM_PIN_MAX + 1);
    if (m > HSM_PIN_MAX)
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "pin", HSM_STATUS_NO_RV,
                              "the PIN in %s is longer than %d bytes", name, HSM_PIN_MAX);
    memcpy(buf, v, m);
    *len = m;
    return 0;
}

int hsm_pin_read(const hsm_pin_source *src, char **pin, size_t *len, hsm_status *st)
{
    int r = COFFER_ERR_INTERNAL;
    char *buf;

    *pin = NULL;
    *len = 0;
    if ((buf = engine_secmem_alloc(HSM_PIN_MAX + 4)) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "pin", HSM_STATUS_NO_RV,
                              "no memory for the PIN");
    if (src != NULL && src->file != NULL)
        r = pin_read_file(src->file, buf, len, st);
    else
        r = pin_read_env(src != NULL && src->env != NULL ? src->env : HSM_PIN_ENV_DEF, buf, len,
                         st);
    if (r < 0) {
        engine_secmem_free(buf);
        *len = 0;
        return r;
    }
    buf[*len] = '\0';
    *pin = buf;
    return 0;
}

void hsm_pin_free(char *pin)
{
    engine_secmem_free(pin);
}
