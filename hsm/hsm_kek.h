/* SPDX-License-Identifier: Apache-2.0 */
/* Envelope encryption: a 32-byte data key wrapped by the token's AES key-encryption key, with the
 * mechanism negotiated for the token (AES-GCM, RFC 5649 key wrap, or CBC encrypt-then-HMAC). */
#ifndef HSM_KEK_H
#define HSM_KEK_H

#include "engine_key.h"
#include "hsm_client.h"
#include "hsm_token.h"

#include <stddef.h>
#include <stdint.h>

#define HSM_DATA_KEY_LEN 32
#define HSM_IV_LEN       12 /* the GCM IV */
#define HSM_TAG_LEN      16
#define HSM_WRAPPED_LEN  (HSM_DATA_KEY_LEN + HSM_TAG_LEN) /* ciphertext || tag; also the room */
#define HSM_AAD_PREFIX   "coffer-kek:"
#define HSM_AAD_MAX      (sizeof(HSM_AAD_PREFIX) - 1 + HSM_KEY_LABEL_MAX)
#define HSM_IV_MAX       16 /* the CBC IV of encrypt-then-MAC */
#define HSM_KWP_LEN      40 /* RFC 5649 of 32 bytes: 8-byte integrity block || 32 bytes */
#define HSM_CBC_LEN      48 /* AES-CBC with PKCS#7 padding of 32 bytes */
#define HSM_MAC_LEN      32 /* HMAC-SHA-256 */
#define HSM_ETM_PREFIX   "coffer-etm:"

/* RFC 5649 in PKCS#11 3.0; SoftHSM2 2.6 calls it CKM_AES_KEY_WRAP_PAD (0x210A). */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210BUL
#endif

/*
 * How a data key is wrapped; docs/keys.md has the table of which tokens use which.
 *   HSM_MECH_GCM          C_Encrypt(CKM_AES_GCM), our random 12-byte IV, AAD "coffer-kek:" label
 *   HSM_MECH_GCM_TOKEN_IV the same, but the token generates the IV (FIPS-mode HSMs refuse a
 *                         caller's): we pass 12 zero bytes and read the IV back from the params
 *   HSM_MECH_KWP          C_WrapKey/C_UnwrapKey with RFC 5649 (CKM_AES_KEY_WRAP_KWP, or SoftHSM2's
 *                         CKM_AES_KEY_WRAP_PAD), the data key a session object for the call
 *   HSM_MECH_CBC_HMAC     encrypt-then-MAC for tokens without an AEAD: C_Encrypt(CKM_AES_CBC_PAD)
 *                         under the KEK with our random 16-byte IV, then C_Sign(CKM_SHA256_HMAC)
 *                         under a second token key over "coffer-etm:" || u16be(len(label)) ||
 *                         label || iv || ciphertext; unwrapping calls C_Verify first and decrypts
 *                         only what verified
 * A restore decrypts GCM the same way whoever chose the IV, so both GCM kinds store
 * "mechanism": "CKM_AES_GCM".
 */
typedef enum hsm_mech {
    HSM_MECH_AUTO =
        0, /* negotiate; in an hsm_wrapped: GCM (what backups before negotiation hold) */
    HSM_MECH_GCM = 1,
    HSM_MECH_GCM_TOKEN_IV = 2,
    HSM_MECH_KWP = 3,
    HSM_MECH_CBC_HMAC = 4,
} hsm_mech;
#define HSM_MECH_COUNT 5

/* "CKM_AES_GCM", ... as stored in metadata ("CKM_AES_GCM" for both GCM kinds). Inline, so that
 * the metadata code (and its fuzzer) stands alone. */
static inline const char *hsm_mech_metadata_name(hsm_mech m, unsigned long kwp_ckm)
{
    switch (m) {
    case HSM_MECH_AUTO:
    case HSM_MECH_GCM:
    case HSM_MECH_GCM_TOKEN_IV:
        return "CKM_AES_GCM";
    case HSM_MECH_KWP:
        return kwp_ckm == CKM_AES_KEY_WRAP_PAD ? "CKM_AES_KEY_WRAP_PAD" : "CKM_AES_KEY_WRAP_KWP";
    case HSM_MECH_CBC_HMAC:
        return "CKM_AES_CBC_PAD+CKM_SHA256_HMAC";
    }
    return "unknown";
}
/* "gcm", "gcm-token-iv", "kwp", "cbc-hmac": the names of --hsm-mechanism and --mechanism. */
const char *hsm_mech_option_name(hsm_mech m);
/* Parse an option value ("auto", "gcm", "gcm-token-iv", "kwp", "cbc-hmac"); -1 when unknown. */
int hsm_mech_parse_option(const char *v);

/*
 * A wrapped data key: what a backup's metadata stores (see hsm_metadata.h).
 *   GCM:  wrapped = C_Encrypt(CKM_AES_GCM, KEK labelled key_label, iv, aad, data key)
 *         iv      = 12 fresh random bytes from OpenSSL's RAND_bytes for every wrap, or the token's
 *         aad     = "coffer-kek:" || key_label (binds the blob to the key's label)
 *         tag     = 128 bits, the last 16 bytes of wrapped
 *   KWP:  wrapped = 40 bytes of RFC 5649 output; no IV (the label is bound by the header's
 *         commitment, and a wrong key fails the integrity check)
 *   CBC+HMAC: iv (16), wrapped = 48 bytes of CBC ciphertext, mac = 32 bytes under mac_key_label
 * A random 96-bit IV per wrap keeps the chance of an IV repeating under one KEK below 2^-32 for
 * up to 2^32 wraps (NIST SP 800-38D); with a data key cache that is far beyond any lifetime.
 *
 * Fields after `wrapped` came with mechanism negotiation: a zeroed struct with key_label, iv and
 * wrapped filled in is a GCM blob, as before (iv_len and wrapped_len 0 mean 12 and 48).
 */
typedef struct hsm_wrapped {
    char key_label[HSM_KEY_LABEL_MAX + 1];
    uint8_t iv[HSM_IV_MAX];
    uint8_t wrapped[HSM_WRAPPED_LEN];
    int mech;              /* hsm_mech; 0 (AUTO) means GCM */
    unsigned long kwp_ckm; /* KWP: CKM_AES_KEY_WRAP_KWP or CKM_AES_KEY_WRAP_PAD */
    size_t iv_len;         /* 0: HSM_IV_LEN */
    size_t wrapped_len;    /* 0: HSM_WRAPPED_LEN */
    char mac_key_label[HSM_KEY_LABEL_MAX + 1]; /* CBC+HMAC only */
    uint8_t mac[HSM_MAC_LEN];                  /* CBC+HMAC only */
} hsm_wrapped;

/* The lengths and the mechanism of w with the defaults of a GCM blob filled in. */
static inline int hsm_wrapped_mech(const hsm_wrapped *w)
{
    return w->mech == HSM_MECH_AUTO ? HSM_MECH_GCM : w->mech;
}
static inline size_t hsm_wrapped_iv_len(const hsm_wrapped *w)
{
    return w->iv_len ? w->iv_len : (hsm_wrapped_mech(w) == HSM_MECH_KWP ? 0 : HSM_IV_LEN);
}
static inline size_t hsm_wrapped_len(const hsm_wrapped *w)
{
    return w->wrapped_len ? w->wrapped_len : HSM_WRAPPED_LEN;
}

/*
 * Wrap dk (exactly 32 bytes) under the client's key_label with the client's mechanism: the one
 * configured (hsm_client_config.mechanism), else the one negotiated with the token at the first
 * wrap after each (re)connect (hsm_kek_negotiate). Returns 0, COFFER_ERR_KEY_SIZE, _CONFIG (the
 * client has no key_label), _HSM_* or _HSM_TIMEOUT; st says what failed.
 */
int hsm_kek_wrap(hsm_client *c, const engine_key *dk, hsm_wrapped *out, hsm_status *st) COFFER_WUR;

/*
 * Unwrap with the KEK named in w (which may differ from the client's key_label: old backups name
 * the key that wrapped them) and the mechanism w records, whatever the client negotiated for new
 * wraps. A token that lacks that mechanism is COFFER_ERR_HSM_CALL (step "unwrap") with a sentence
 * naming the mechanism and key the restore needs. On success *out is the 32-byte data key in
 * engine_secmem (free with engine_key_free). A blob the token refuses to decrypt (tag mismatch: the
 * iv, wrapped key or label were altered, or the key under that label is not the one that wrapped
 * it) is COFFER_ERR_WRONG_KEY; nothing is released.
 */
int hsm_kek_unwrap(hsm_client *c, const hsm_wrapped *w, engine_key **out,
                   hsm_status *st) COFFER_WUR;

/* The AAD for a label: writes at most cap bytes to out and returns the AAD length (0 if cap is
 * too small). Exposed so that tests can check a wrapped key independently. */
size_t hsm_kek_aad(const char *label, uint8_t *out, size_t cap);

/*
 * What negotiation found: the mechanism chosen, and for every candidate why it was passed over
 * ("" for the chosen one and those not tried after it).
 */
typedef struct hsm_negotiation {
    int mech;              /* hsm_mech */
    unsigned long kwp_ckm; /* for HSM_MECH_KWP */
    char why[HSM_MECH_COUNT][256];
} hsm_negotiation;

/*
 * Negotiate now (on an HSM thread) for the client's key_label, or for no key yet (init-kek: only
 * C_GetMechanismInfo counts) when the client has none: C_GetMechanismInfo, the key's attributes
 * and, for GCM, one trial C_Encrypt decide, in the order GCM with our IV, GCM with the token's IV,
 * RFC 5649 key wrap, CBC encrypt-then-HMAC, unless the client's mechanism names one. Returns 0 or
 * COFFER_ERR_HSM_CALL ("no mechanism") and the other hsm codes; out is filled either way.
 */
int hsm_kek_negotiate(hsm_client *c, hsm_negotiation *out, hsm_status *st) COFFER_WUR;

/*
 * Asynchronous forms: the same work, queued to the client's HSM threads without waiting. The
 * callback runs exactly once on a thread of the client (an HSM thread when the call ended, the
 * client's watchdog at the timeout, possibly before the submit returns), with the result code and
 * status of the synchronous form: wrap gives the wrapped key (NULL on failure; valid during the
 * call only), unwrap the data key (the callback owns it: engine_key_free; NULL on failure),
 * negotiate what was found (valid during the call). The callback must not block for long and must
 * not close the client. A submit returns 0 (the callback will run), or the code for a request
 * that could not be queued (bad arguments, COFFER_ERR_NOMEM, _SHUTDOWN): then the callback does
 * not run. Any thread; dk and w are copied before the submit returns.
 */
typedef void (*hsm_kek_wrap_cb)(void *ctx, int r, const hsm_status *st, const hsm_wrapped *w);
typedef void (*hsm_kek_unwrap_cb)(void *ctx, int r, const hsm_status *st, engine_key *dk);
typedef void (*hsm_kek_negotiate_cb)(void *ctx, int r, const hsm_status *st,
                                     const hsm_negotiation *neg);
int hsm_kek_wrap_submit(hsm_client *c, const engine_key *dk, hsm_kek_wrap_cb cb,
                        void *ctx) COFFER_WUR;
int hsm_kek_unwrap_submit(hsm_client *c, const hsm_wrapped *w, hsm_kek_unwrap_cb cb,
                          void *ctx) COFFER_WUR;
int hsm_kek_negotiate_submit(hsm_client *c, hsm_kek_negotiate_cb cb, void *ctx) COFFER_WUR;

/* The HMAC key label of encrypt-then-MAC for a KEK label: "<label>-hmac" (cap bytes; 0 or -1). */
int hsm_kek_mac_label(const char *kek_label, char *out, size_t cap);

#endif
