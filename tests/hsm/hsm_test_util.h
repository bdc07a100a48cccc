/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers: SoftHSM2 tokens in a private temporary directory, and raw PKCS#11 access to them.
 */
#ifndef HSM_TEST_UTIL_H
#define HSM_TEST_UTIL_H

#include <p11-kit/pkcs11.h>
#include <stddef.h>

#define HT_PIN    "ht-user-pin-4711"
#define HT_SO_PIN "ht-so-pin-0815"

/* The SoftHSM2 environment of one test program. */
struct ht_env {
    char *dir;           /* the temporary directory */
    char module[1024];   /* libsofthsm2.so */
    char conf[1100];     /* <dir>/softhsm2.conf, exported as SOFTHSM2_CONF */
    char tokens[1100];   /* <dir>/tokens */
    char pin_file[1100]; /* <dir>/pin, holding HT_PIN */
};

/* Find SoftHSM2 (skip the program when it is missing), write the config, export SOFTHSM2_CONF,
 * write the PIN file. */
void ht_env_setup(struct ht_env *e);
void ht_env_teardown(struct ht_env *e);

/* softhsm2-util --init-token --free --label label (PIN HT_PIN); writes the token's directory
 * (under e->tokens) into dir (dirlen bytes). Fails the test when it does not work. */
void ht_token_init(struct ht_env *e, const char *label, char *dir, size_t dirlen);

/* Raw PKCS#11, independent of coffer_hsm: a managed p11-kit load of e->module, a session on the
 * token labelled label, logged in with HT_PIN. */
struct ht_raw {
    CK_FUNCTION_LIST *f;
    CK_SESSION_HANDLE s;
};
void ht_raw_open(struct ht_env *e, const char *token, struct ht_raw *r);
void ht_raw_close(struct ht_raw *r);
/* Every object with that label and class (class ~0UL: any class); returns the count. */
CK_ULONG ht_raw_find(struct ht_raw *r, const char *label, CK_OBJECT_CLASS cls,
                     CK_OBJECT_HANDLE *out, CK_ULONG max);

#endif
