/* SPDX-License-Identifier: Apache-2.0 */
/* SoftHSM2 in a temporary directory for the HSM tests, and raw PKCS#11 calls that bypass
 * coffer_hsm. */
#include "hsm_test_util.h"

#include "test_support.h"

#include <dirent.h>
#include <p11-kit/p11-kit.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const module_candidates[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
};

void ht_env_setup(struct ht_env *e)
{
    char text[1400];
    memset(e, 0, sizeof(*e));
    for (size_t i = 0; i < sizeof(module_candidates) / sizeof(module_candidates[0]); i++) {
        if (access(module_candidates[i], R_OK) == 0) {
            snprintf(e->module, sizeof(e->module), "%s", module_candidates[i]);
            break;
        }
    }
    if (e->module[0] == '\0')
        ts_skip("SoftHSM2 is not installed (no libsofthsm2.so; apt-get install softhsm2)");
    if (access("/usr/bin/softhsm2-util", X_OK) != 0)
        ts_skip("softhsm2-util is not installed");
    e->dir = ts_tmpdir();
    snprintf(e->conf, sizeof(e->conf), "%s/softhsm2.conf", e->dir);
    snprintf(e->tokens, sizeof(e->tokens), "%s/tokens", e->dir);
    snprintf(e->pin_file, sizeof(e->pin_file), "%s/pin", e->dir);
    if (mkdir(e->tokens, 0700) != 0)
        abort();
    int n = snprintf(text, sizeof(text),
                     "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                     e->tokens);
    if (ts_write_file(e->conf, text, (size_t)n) != 0 ||
        ts_write_file(e->pin_file, HT_PIN "\n", strlen(HT_PIN) + 1) != 0)
        abort();
    setenv("SOFTHSM2_CONF", e->conf, 1);
}

void ht_env_teardown(struct ht_env *e)
{
    if (e->dir != NULL) {
        ts_rmtree(e->dir);
        free(e->dir);
    }
    e->dir = NULL;
}

/* 1 when dir/name exists. */
static int dir_has(const char *dir, const char *name)
{
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

void ht_token_init(struct ht_env *e, const char *label, char *dir, size_t dirlen)
{
    char before[64][256];
    int nbefore = 0;
    DIR *d = opendir(e->tokens);
    struct dirent *de;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL && nbefore < 64)
        if (de->d_name[0] != '.')
            snprintf(before[nbefore++], sizeof(before[0]), "%s", de->d_name);
    closedir(d);

    char lab[128];
    snprintf(lab, sizeof(lab), "%s", label);
    char *argv[] = {"/usr/bin/softhsm2-util",
                    "--init-token",
                    "--free",
                    "--label",
                    lab,
                    "--pin",
                    HT_PIN,
                    "--so-pin",
                    HT_SO_PIN,
                    NULL};
    char out[2048];
    snprintf(out, sizeof(out), "%s/init.out", e->dir);
    assert_int_equal(ts_run(argv, NULL, NULL, out, out), 0);

    dir[0] = '\0';
    assert_non_null(d = opendir(e->tokens));
    while ((de = readdir(d)) != NULL) {
        int seen = de->d_name[0] == '.';
        for (int i = 0; i < nbefore && !seen; i++)
            seen = strcmp(before[i], de->d_name) == 0;
        if (!seen && dir_has(e->tokens, de->d_name))
            snprintf(dir, dirlen, "%s/%s", e->tokens, de->d_name);
    }
    closedir(d);
    assert_true(dir[0] != '\0');
}

void ht_raw_open(struct ht_env *e, const char *token, struct ht_raw *r)
{
    CK_SLOT_ID slots[32];
    CK_ULONG n = 32;
    CK_TOKEN_INFO ti;
    int found = 0;

    memset(r, 0, sizeof(*r));
    r->f = p11_kit_module_load(e->module, 0);
    assert_non_null(r->f);
    assert_int_equal(p11_kit_module_initialize(r->f), CKR_OK);
    assert_int_equal(r->f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n && !found; i++) {
        assert_int_equal(r->f->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        size_t len = strlen(token);
        if (memcmp(ti.label, token, len) == 0 && (len == 32 || ti.label[len] == ' ')) {
            assert_int_equal(r->f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                                 NULL, NULL, &r->s),
                             CKR_OK);
            found = 1;
        }
    }
    assert_true(found);
    CK_RV rv = r->f->C_Login(r->s, CKU_USER, (CK_UTF8CHAR_PTR)HT_PIN, strlen(HT_PIN));
    assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

void ht_raw_close(struct ht_raw *r)
{
    if (r->f == NULL)
        return;
    (void)r->f->C_CloseSession(r->s);
    (void)p11_kit_module_finalize(r->f);
    p11_kit_module_release(r->f);
    memset(r, 0, sizeof(*r));
}

CK_ULONG ht_raw_find(struct ht_raw *r, const char *label, CK_OBJECT_CLASS cls,
                     CK_OBJECT_HANDLE *out, CK_ULONG max)
{
    CK_ATTRIBUTE t[2] = {{CKA_LABEL, (void *)label, strlen(label)}, {CKA_CLASS, &cls, sizeof(cls)}};
    CK_ULONG n = 0;
    assert_int_equal(r->f->C_FindObjectsInit(r->s, t, cls == ~0UL ? 1 : 2), CKR_OK);
    assert_int_equal(r->f->C_FindObjects(r->s, out, max, &n), CKR_OK);
    assert_int_equal(r->f->C_FindObjectsFinal(r->s), CKR_OK);
    return n;
}
