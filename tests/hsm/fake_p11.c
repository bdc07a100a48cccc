/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny PKCS#11 module for tests: one token, one AES-GCM key, a settable delay in every call,
 * and the behaviours of hardware HSMs that no Debian token has (COFFER_FAKE_P11_MODE). */
#include <p11-kit/pkcs11.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Token "slow" (user PIN "1234") holds one AES-256 secret key "slow-kek". C_Encrypt and C_Decrypt
 * do AES-256-GCM with it through OpenSSL after sleeping coffer_fake_p11_set_delay_ms()
 * milliseconds: a token that hangs or answers late. The test reaches the setter by dlopen()ing
 * this same file (which returns the handle p11-kit already holds) and dlsym().
 *
 * C_Initialize reads COFFER_FAKE_P11_MODE, a comma-separated list of what FIPS-mode hardware HSMs
 * do (Thales Luna, AWS CloudHSM):
 *   token-iv        C_EncryptInit with CKM_AES_GCM refuses any IV but 12 zero bytes
 *                   (CKR_MECHANISM_PARAM_INVALID) and writes the IV it generates into pIv
 *   iv-bits         CK_GCM_PARAMS must carry ulIvBits = 96 as well as ulIvLen = 12
 *   max-sessions=N  at most N open sessions (CKR_SESSION_COUNT beyond), ulMaxSessionCount N
 *   hide-max        ulMaxSessionCount says CK_EFFECTIVELY_INFINITE all the same
 *   close-once      the first C_Encrypt closes its session and answers CKR_SESSION_CLOSED
 * C_GetMechanismInfo offers CKM_AES_GCM (encrypt, decrypt) and nothing else.
 * coffer_fake_p11_stats() tells the most sessions open at once since the last C_Initialize and
 * how often C_Initialize ran.
 */
#define FAKE_SLOT    7
#define FAKE_KEY     100
#define FAKE_PIN     "1234"
#define FAKE_LABEL   "slow-kek"
#define MAX_SESSIONS 256

struct fake_session {
    int open;
    int find_pending;
    int op; /* 0 none, 1 encrypt, 2 decrypt */
    unsigned char iv[16];
    unsigned char aad[256];
    unsigned long aadlen;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int initialized, logged_in;
static int mode_token_iv, mode_iv_bits, mode_hide_max, mode_close_once;
static unsigned mode_max_sessions; /* 0: MAX_SESSIONS - 1 */
static unsigned open_now, open_peak, inits;

void coffer_fake_p11_stats(unsigned *peak_sessions, unsigned *initializations);
void coffer_fake_p11_stats(unsigned *peak_sessions, unsigned *initializations)
{
    pthread_mutex_lock(&mu);
    *peak_sessions = open_peak;
    *initializations = inits;
    pthread_mutex_unlock(&mu);
}

/* Under mu. */
static void mode_read(void)
{
    const char *m = getenv("COFFER_FAKE_P11_MODE");
    const char *ms;
    if (m == NULL)
        m = "";
    mode_token_iv = strstr(m, "token-iv") != NULL;
    mode_iv_bits = strstr(m, "iv-bits") != NULL;
    mode_hide_max = strstr(m, "hide-max") != NULL;
    mode_close_once = strstr(m, "close-once") != NULL;
    ms = strstr(m, "max-sessions=");
    mode_max_sessions = ms != NULL ? (unsigned)strtoul(ms + 13, NULL, 10) : 0;
}
static struct fake_session sessions[MAX_SESSIONS];
static atomic_uint delay_ms;
static const unsigned char fake_key[32] = {
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};

void coffer_fake_p11_set_delay_ms(unsigned ms);
void coffer_fake_p11_set_delay_ms(unsigned ms)
{
    atomic_store(&delay_ms, ms);
}

static void fake_sleep(void)
{
    unsigned ms = atomic_load(&delay_ms);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

static void padcpy(unsigned char *dst, size_t n, const char *src)
{
    memset(dst, ' ', n);
    memcpy(dst, src, strlen(src) < n ? strlen(src) : n);
}

static struct fake_session *sess(CK_SESSION_HANDLE h)
{
    if (h == 0 || h >= MAX_SESSIONS || !sessions[h].open)
        return NULL;
    return &sessions[h];
}

static CK_RV fake_Initialize(CK_VOID_PTR args)
{
    pthread_mutex_lock(&mu);
    CK_RV rv = initialized ? CKR_CRYPTOKI_ALREADY_INITIALIZED : CKR_OK;
    if (!initialized) {
        mode_read();
        inits++;
        open_now = 0;
        open_peak = 0;
    }
    initialized = 1;
    pthread_mutex_unlock(&mu);
    return rv;
}

static CK_RV fake_Finalize(CK_VOID_PTR reserved)
{
    pthread_mutex_lock(&mu);
    initialized = 0;
    logged_in = 0;
    open_now = 0;
    memset(sessions, 0, sizeof(sessions));
    pthread_mutex_unlock(&mu);
    return CKR_OK;
}

static CK_RV fake_GetInfo(CK_INFO_PTR info)
{
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    padcpy(info->manufacturerID, sizeof(info->manufacturerID), "coffer tests");
    padcpy(info->libraryDescription, sizeof(info->libraryDescription), "coffer slow token");
    info->libraryVersion.major = 1;
    return CKR_OK;
}

static CK_RV fake_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

static CK_RV fake_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    if (list != NULL) {
        if (*count < 1) {
            *count = 1;
            return CKR_BUFFER_TOO_SMALL;
        }
        list[0] = FAKE_SLOT;
    }
    *count = 1;
    return CKR_OK;
}

static CK_RV fake_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    memset(info, 0, sizeof(*info));
    padcpy(info->slotDescription, sizeof(info->slotDescription), "slow slot");
    padcpy(info->manufacturerID, sizeof(info->manufacturerID), "coffer tests");
    info->flags = CKF_TOKEN_PRESENT;
    return CKR_OK;
}

static CK_RV fake_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    memset(info, 0, sizeof(*info));
    padcpy(info->label, sizeof(info->label), "slow");
    padcpy(info->manufacturerID, sizeof(info->manufacturerID), "coffer tests");
    padcpy(info->model, sizeof(info->model), "slow token");
    padcpy(info->serialNumber, sizeof(info->serialNumber), "0001");
    info->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_LOGIN_REQUIRED;
    info->ulMaxSessionCount =
        mode_max_sessions == 0 || mode_hide_max ? CK_EFFECTIVELY_INFINITE : mode_max_sessions;
    info->ulSessionCount = open_now;
    return CKR_OK;
}

static CK_RV fake_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                              CK_SESSION_HANDLE_PTR out)
{
    CK_RV rv = CKR_SESSION_COUNT;
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    pthread_mutex_lock(&mu);
    for (CK_SESSION_HANDLE h = 1; h < MAX_SESSIONS; h++) {
        if (mode_max_sessions != 0 && open_now >= mode_max_sessions)
            break;
        if (!sessions[h].open) {
            memset(&sessions[h], 0, sizeof(sessions[h]));
            sessions[h].open = 1;
            *out = h;
            rv = CKR_OK;
            if (++open_now > open_peak)
                open_peak = open_now;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return rv;
}

static CK_RV fake_CloseSession(CK_SESSION_HANDLE h)
{
    CK_RV rv = CKR_SESSION_HANDLE_INVALID;
    pthread_mutex_lock(&mu);
    if (sess(h) != NULL) {
        sessions[h].open = 0;
        open_now--;
        rv = CKR_OK;
    }
    pthread_mutex_unlock(&mu);
    return rv;
}

static CK_RV fake_CloseAllSessions(CK_SLOT_ID slot)
{
    pthread_mutex_lock(&mu);
    memset(sessions, 0, sizeof(sessions));
    open_now = 0;
    pthread_mutex_unlock(&mu);
    return CKR_OK;
}

static CK_RV fake_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    if (sess(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    memset(info, 0, sizeof(*info));
    info->slotID = FAKE_SLOT;
    info->state = logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
    info->flags = CKF_SERIAL_SESSION;
    return CKR_OK;
}

static CK_RV fake_Login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    CK_RV rv;
    if (sess(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    pthread_mutex_lock(&mu);
    if (logged_in)
        rv = CKR_USER_ALREADY_LOGGED_IN;
    else if (len == strlen(FAKE_PIN) && memcmp(pin, FAKE_PIN, len) == 0)
        rv = CKR_OK, logged_in = 1;
    else
        rv = CKR_PIN_INCORRECT;
    pthread_mutex_unlock(&mu);
    return rv;
}

static CK_RV fake_Logout(CK_SESSION_HANDLE h)
{
    logged_in = 0;
    return CKR_OK;
}

static CK_RV fake_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t,
                                    CK_ULONG n)
{
    CK_RV rv = CKR_OK;
    if (sess(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (o != FAKE_KEY)
        return CKR_OBJECT_HANDLE_INVALID;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG ul = 0;
        CK_BBOOL b = CK_FALSE;
        const void *src = &ul;
        CK_ULONG len = sizeof(ul);
        switch (t[i].type) {
        case CKA_CLASS:
            ul = CKO_SECRET_KEY;
            break;
        case CKA_KEY_TYPE:
            ul = CKK_AES;
            break;
        case CKA_VALUE_LEN:
            ul = 32;
            break;
        case CKA_LABEL:
            src = FAKE_LABEL;
            len = strlen(FAKE_LABEL);
            break;
        case CKA_PRIVATE:
        case CKA_SENSITIVE:
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
        case CKA_ENCRYPT:
        case CKA_DECRYPT:
            b = CK_TRUE;
            /* fall through */
        case CKA_EXTRACTABLE:
        case CKA_WRAP:
        case CKA_UNWRAP:
        case CKA_SIGN:
        case CKA_VERIFY:
        case CKA_DERIVE:
            src = &b;
            len = sizeof(b);
            break;
        default:
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
            continue;
        }
        if (t[i].pValue != NULL) {
            if (t[i].ulValueLen < len) {
                t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
                rv = CKR_BUFFER_TOO_SMALL;
                continue;
            }
            memcpy(t[i].pValue, src, len);
        }
        t[i].ulValueLen = len;
    }
    return rv;
}

static CK_RV fake_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    struct fake_session *s = sess(h);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    s->find_pending = logged_in;
    for (CK_ULONG i = 0; i < n; i++) {
        if (t[i].type == CKA_LABEL && (t[i].ulValueLen != strlen(FAKE_LABEL) ||
                                       memcmp(t[i].pValue, FAKE_LABEL, t[i].ulValueLen)))
            s->find_pending = 0;
        if (t[i].type == CKA_CLASS && *(CK_OBJECT_CLASS *)t[i].pValue != CKO_SECRET_KEY)
            s->find_pending = 0;
    }
    return CKR_OK;
}

static CK_RV fake_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                              CK_ULONG_PTR n)
{
    struct fake_session *s = sess(h);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    *n = 0;
    if (s->find_pending && max > 0) {
        out[0] = FAKE_KEY;
        *n = 1;
        s->find_pending = 0;
    }
    return CKR_OK;
}

static CK_RV fake_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    return sess(h) == NULL ? CKR_SESSION_HANDLE_INVALID : CKR_OK;
}

static CK_RV crypt_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k, int op)
{
    struct fake_session *s = sess(h);
    CK_GCM_PARAMS *gp;
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (k != FAKE_KEY)
        return CKR_KEY_HANDLE_INVALID;
    if (m->mechanism != CKM_AES_GCM || m->ulParameterLen != sizeof(*gp))
        return CKR_MECHANISM_INVALID;
    gp = m->pParameter;
    if (gp->ulIvLen != 12 || gp->ulAADLen > sizeof(s->aad) || gp->ulTagBits != 128)
        return CKR_MECHANISM_PARAM_INVALID;
    if (mode_iv_bits && gp->ulIvBits != 96)
        return CKR_MECHANISM_PARAM_INVALID;
    if (mode_token_iv && op == 1) {
        static const unsigned char zero[12];
        if (memcmp(gp->pIv, zero, 12) != 0)
            return CKR_MECHANISM_PARAM_INVALID; /* FIPS mode: only the token chooses IVs */
        if (RAND_bytes(gp->pIv, 12) != 1)
            return CKR_FUNCTION_FAILED;
    }
    memcpy(s->iv, gp->pIv, 12);
    memcpy(s->aad, gp->pAAD, gp->ulAADLen);
    s->aadlen = gp->ulAADLen;
    s->op = op;
    return CKR_OK;
}

static CK_RV fake_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
    return crypt_init(h, m, k, 1);
}

static CK_RV fake_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
    return crypt_init(h, m, k, 2);
}

static CK_RV gcm(struct fake_session *s, int enc, const unsigned char *in, CK_ULONG inlen,
                 unsigned char *out, CK_ULONG_PTR outlen)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, f = 0, ok;
    CK_ULONG body = enc ? inlen : inlen - 16;
    if (ctx == NULL)
        return CKR_HOST_MEMORY;
    ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, fake_key, s->iv, enc) == 1 &&
         EVP_CipherUpdate(ctx, NULL, &n, s->aad, (int)s->aadlen) == 1 &&
         EVP_CipherUpdate(ctx, out, &n, in, (int)body) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + body)) == 1;
    ok = ok && EVP_CipherFinal_ex(ctx, out + n, &f) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + body) == 1;
    EVP_CIPHER_CTX_free(ctx);
    s->op = 0;
    if (!ok)
        return CKR_ENCRYPTED_DATA_INVALID;
    *outlen = enc ? body + 16 : body;
    return CKR_OK;
}

static CK_RV fake_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen)
{
    struct fake_session *s = sess(h);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op != 1)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (out == NULL) {
        *outlen = inlen + 16;
        return CKR_OK;
    }
    if (*outlen < inlen + 16)
        return CKR_BUFFER_TOO_SMALL;
    pthread_mutex_lock(&mu);
    int close_now = mode_close_once;
    mode_close_once = 0;
    if (close_now) {
        s->open = 0;
        open_now--;
    }
    pthread_mutex_unlock(&mu);
    if (close_now)
        return CKR_SESSION_CLOSED;
    fake_sleep();
    return gcm(s, 1, in, inlen, out, outlen);
}

static CK_RV fake_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen)
{
    struct fake_session *s = sess(h);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op != 2)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (inlen < 16) {
        s->op = 0;
        return CKR_ENCRYPTED_DATA_LEN_RANGE;
    }
    if (out == NULL) {
        *outlen = inlen - 16;
        return CKR_OK;
    }
    if (*outlen < inlen - 16)
        return CKR_BUFFER_TOO_SMALL;
    fake_sleep();
    return gcm(s, 0, in, inlen, out, outlen);
}

/* Everything else: not supported. */
#define NS return CKR_FUNCTION_NOT_SUPPORTED;
static CK_RV ns_GetMechanismList(CK_SLOT_ID a, CK_MECHANISM_TYPE_PTR b, CK_ULONG_PTR c)
{
    NS
}
static CK_RV fake_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                   CK_MECHANISM_INFO_PTR info)
{
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    if (type != CKM_AES_GCM)
        return CKR_MECHANISM_INVALID;
    memset(info, 0, sizeof(*info));
    info->ulMinKeySize = 16;
    info->ulMaxKeySize = 32;
    info->flags = CKF_ENCRYPT | CKF_DECRYPT;
    return CKR_OK;
}
static CK_RV ns_InitToken(CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d)
{
    NS
}
static CK_RV ns_InitPIN(CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c)
{
    NS
}
static CK_RV ns_SetPIN(CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d,
                       CK_ULONG e)
{
    NS
}
static CK_RV ns_GetOperationState(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
    NS
}
static CK_RV ns_SetOperationState(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c,
                                  CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e)
{
    NS
}
static CK_RV ns_CreateObject(CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c,
                             CK_OBJECT_HANDLE_PTR d)
{
    NS
}
static CK_RV ns_CopyObject(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
                           CK_OBJECT_HANDLE_PTR e)
{
    NS
}
static CK_RV ns_DestroyObject(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b)
{
    NS
}
static CK_RV ns_GetObjectSize(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c)
{
    NS
}
static CK_RV ns_SetAttributeValue(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c,
                                  CK_ULONG d)
{
    NS
}
static CK_RV ns_Update(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d,
                       CK_ULONG_PTR e)
{
    NS
}
static CK_RV ns_Final(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c)
{
    NS
}
static CK_RV ns_MechInit(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c)
{
    NS
}
static CK_RV ns_DigestInit(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b)
{
    NS
}
static CK_RV ns_DataUpdate(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c)
{
    NS
}
static CK_RV ns_DigestKey(CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b)
{
    NS
}
static CK_RV ns_Verify(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e)
{
    NS
}
static CK_RV ns_VerifyFinal(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c)
{
    NS
}
static CK_RV ns_GenerateKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d,
                            CK_OBJECT_HANDLE_PTR e)
{
    NS
}
static CK_RV ns_GenerateKeyPair(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c,
                                CK_ULONG d, CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g,
                                CK_OBJECT_HANDLE_PTR h)
{
    NS
}
static CK_RV ns_WrapKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
                        CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f)
{
    NS
}
static CK_RV ns_UnwrapKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
                          CK_BYTE_PTR d, CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g,
                          CK_OBJECT_HANDLE_PTR h)
{
    NS
}
static CK_RV ns_DeriveKey(CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c,
                          CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f)
{
    NS
}
static CK_RV ns_SeedRandom(CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c)
{
    NS
}
static CK_RV ns_Session(CK_SESSION_HANDLE a)
{
    NS
}
static CK_RV ns_WaitForSlotEvent(CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c)
{
    NS
}
#undef NS

static CK_FUNCTION_LIST fake_list = {
    .version = {2, 40},
    .C_Initialize = fake_Initialize,
    .C_Finalize = fake_Finalize,
    .C_GetInfo = fake_GetInfo,
    .C_GetFunctionList = fake_GetFunctionList,
    .C_GetSlotList = fake_GetSlotList,
    .C_GetSlotInfo = fake_GetSlotInfo,
    .C_GetTokenInfo = fake_GetTokenInfo,
    .C_GetMechanismList = ns_GetMechanismList,
    .C_GetMechanismInfo = fake_GetMechanismInfo,
    .C_InitToken = ns_InitToken,
    .C_InitPIN = ns_InitPIN,
    .C_SetPIN = ns_SetPIN,
    .C_OpenSession = fake_OpenSession,
    .C_CloseSession = fake_CloseSession,
    .C_CloseAllSessions = fake_CloseAllSessions,
    .C_GetSessionInfo = fake_GetSessionInfo,
    .C_GetOperationState = ns_GetOperationState,
    .C_SetOperationState = ns_SetOperationState,
    .C_Login = fake_Login,
    .C_Logout = fake_Logout,
    .C_CreateObject = ns_CreateObject,
    .C_CopyObject = ns_CopyObject,
    .C_DestroyObject = ns_DestroyObject,
    .C_GetObjectSize = ns_GetObjectSize,
    .C_GetAttributeValue = fake_GetAttributeValue,
    .C_SetAttributeValue = ns_SetAttributeValue,
    .C_FindObjectsInit = fake_FindObjectsInit,
    .C_FindObjects = fake_FindObjects,
    .C_FindObjectsFinal = fake_FindObjectsFinal,
    .C_EncryptInit = fake_EncryptInit,
    .C_Encrypt = fake_Encrypt,
    .C_EncryptUpdate = ns_Update,
    .C_EncryptFinal = ns_Final,
    .C_DecryptInit = fake_DecryptInit,
    .C_Decrypt = fake_Decrypt,
    .C_DecryptUpdate = ns_Update,
    .C_DecryptFinal = ns_Final,
    .C_DigestInit = ns_DigestInit,
    .C_Digest = ns_Update,
    .C_DigestUpdate = ns_DataUpdate,
    .C_DigestKey = ns_DigestKey,
    .C_DigestFinal = ns_Final,
    .C_SignInit = ns_MechInit,
    .C_Sign = ns_Update,
    .C_SignUpdate = ns_DataUpdate,
    .C_SignFinal = ns_Final,
    .C_SignRecoverInit = ns_MechInit,
    .C_SignRecover = ns_Update,
    .C_VerifyInit = ns_MechInit,
    .C_Verify = ns_Verify,
    .C_VerifyUpdate = ns_DataUpdate,
    .C_VerifyFinal = ns_VerifyFinal,
    .C_VerifyRecoverInit = ns_MechInit,
    .C_VerifyRecover = ns_Update,
    .C_DigestEncryptUpdate = ns_Update,
    .C_DecryptDigestUpdate = ns_Update,
    .C_SignEncryptUpdate = ns_Update,
    .C_DecryptVerifyUpdate = ns_Update,
    .C_GenerateKey = ns_GenerateKey,
    .C_GenerateKeyPair = ns_GenerateKeyPair,
    .C_WrapKey = ns_WrapKey,
    .C_UnwrapKey = ns_UnwrapKey,
    .C_DeriveKey = ns_DeriveKey,
    .C_SeedRandom = ns_SeedRandom,
    .C_GenerateRandom = ns_SeedRandom,
    .C_GetFunctionStatus = ns_Session,
    .C_CancelFunction = ns_Session,
    .C_WaitForSlotEvent = ns_WaitForSlotEvent,
};

static CK_RV fake_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    *list = &fake_list;
    return CKR_OK;
}

/* The module's one entry point. */
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    return fake_GetFunctionList(list);
}
