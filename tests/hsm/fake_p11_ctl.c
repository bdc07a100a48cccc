/* SPDX-License-Identifier: Apache-2.0 */
/* A PKCS#11 module for the daemon tests: fake_p11 whose delay is read from a file at every call. */
#include <p11-kit/pkcs11.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * hsm_timeout_test sets fake_p11's delay through dlsym in its own process. cofferd is another
 * process, so this module (loaded by cofferd like any PKCS#11 module) wraps fake_p11 and, before
 * every C_Encrypt and C_Decrypt, sets the delay to the number of milliseconds written in the file
 * named by COFFER_FAKE_P11_DELAY_FILE (no file or no number: 0). The test changes the file while
 * the daemon runs: a token that starts hanging and comes back.
 */
static CK_FUNCTION_LIST list;
static CK_FUNCTION_LIST_PTR inner;
static void (*set_delay)(unsigned ms);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void ctl_delay(void)
{
    const char *path = getenv("COFFER_FAKE_P11_DELAY_FILE");
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    unsigned ms = 0;
    if (f != NULL) {
        if (fscanf(f, "%u", &ms) != 1)
            ms = 0;
        fclose(f);
    }
    set_delay(ms);
}

static CK_RV ctl_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                         CK_ULONG_PTR outlen)
{
    ctl_delay();
    return inner->C_Encrypt(h, in, inlen, out, outlen);
}

static CK_RV ctl_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                         CK_ULONG_PTR outlen)
{
    ctl_delay();
    return inner->C_Decrypt(h, in, inlen, out, outlen);
}

static CK_RV ctl_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);

static void ctl_load(void)
{
    void *h = dlopen(COFFER_FAKE_P11, RTLD_NOW | RTLD_LOCAL);
    CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
    if (h == NULL)
        return;
    *(void **)&get = dlsym(h, "C_GetFunctionList");
    *(void **)&set_delay = dlsym(h, "coffer_fake_p11_set_delay_ms");
    if (get == NULL || set_delay == NULL || get(&inner) != CKR_OK)
        return;
    list = *inner;
    list.C_GetFunctionList = ctl_GetFunctionList;
    list.C_Encrypt = ctl_Encrypt;
    list.C_Decrypt = ctl_Decrypt;
}

static CK_RV ctl_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
    pthread_once(&once, ctl_load);
    if (inner == NULL || out == NULL)
        return CKR_GENERAL_ERROR;
    *out = &list;
    return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
    return ctl_GetFunctionList(out);
}
