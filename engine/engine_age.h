/* SPDX-License-Identifier: Apache-2.0 */
/* age (age-encryption.org/v1) with X25519 recipients: keys, key files, and whole files in memory.
 */
#ifndef ENGINE_AGE_H
#define ENGINE_AGE_H

#include "engine_gcm.h"

#include <stddef.h>
#include <stdint.h>

/*
 * What this module implements of https://age-encryption.org/v1, on OpenSSL's X25519,
 * HKDF-SHA-256, HMAC-SHA-256 and ChaCha20-Poly1305 (bech32 is engine_bech32):
 *   - X25519 recipients "age1..." and identities "AGE-SECRET-KEY-1..." (bech32, 32-byte keys);
 *   - encrypting a small message in memory to one or more X25519 recipients, as a complete binary
 *     age file (version line, one "-> X25519" stanza per recipient, header MAC, 16-byte nonce,
 *     STREAM of 64 KiB ChaCha20-Poly1305 chunks);
 *   - decrypting such a file, made by coffer or by any other age implementation, with a set of
 *     identities. Stanzas of other types (scrypt, ssh, plugins) are skipped, as the spec says.
 * Not implemented: the ASCII armor, passphrases, SSH keys, plugins, post-quantum recipients.
 * Every function works on its arguments only and may be called from any thread.
 */

#define ENGINE_AGE_KEY_LEN        32
#define ENGINE_AGE_RECIPIENT_TEXT 62         /* "age1" + 52 data + 6 checksum characters */
#define ENGINE_AGE_IDENTITY_TEXT  74         /* "AGE-SECRET-KEY-1" + 52 + 6 */
#define ENGINE_AGE_FILE_MAX       (1u << 20) /* the largest age file engine_age_decrypt reads */
#define ENGINE_AGE_KEYFILE_MAX    65536      /* the largest recipients or identity file read */
#define ENGINE_AGE_LIST_MAX       64         /* recipients or identities in one list */

/* A recipient: an X25519 public key and its canonical (lower-case) text. Not secret. */
typedef struct engine_age_recipient {
    uint8_t key[ENGINE_AGE_KEY_LEN];
    char text[ENGINE_AGE_RECIPIENT_TEXT + 1];
} engine_age_recipient;

/* An identity: an X25519 secret key and its recipient. Lives in engine_secmem (locked, wiped). */
typedef struct engine_age_identity {
    uint8_t secret[ENGINE_AGE_KEY_LEN];
    engine_age_recipient recipient;
} engine_age_identity;

/*
 * Parse one recipient string (len bytes, no surrounding white space). Returns 0 or
 * COFFER_ERR_KEY_FORM with one sentence in detail (NULL allowed) naming what is wrong: a bad
 * checksum, a wrong prefix (an identity given as a recipient, an SSH key, a post-quantum or
 * plugin recipient), a wrong length, a character outside the alphabet. Never echoes more than
 * the prefix of what it was given.
 */
int engine_age_recipient_parse(engine_age_recipient *out, const char *text, size_t len,
                               char *detail, size_t detaillen) COFFER_WUR;

/*
 * Parse one identity string into a new identity in locked memory (engine_age_identity_free it).
 * Errors as engine_age_recipient_parse (the sentence never contains the secret).
 */
int engine_age_identity_parse(engine_age_identity **out, const char *text, size_t len, char *detail,
                              size_t detaillen) COFFER_WUR;
/* A new random identity (OpenSSL RAND_priv_bytes). */
int engine_age_identity_generate(engine_age_identity **out) COFFER_WUR;
/* Its "AGE-SECRET-KEY-1..." text and a NUL; out is secret: wipe it after use. */
int engine_age_identity_text(const engine_age_identity *id,
                             char out[ENGINE_AGE_IDENTITY_TEXT + 1]) COFFER_WUR;
/* Wipe and free; NULL allowed. */
void engine_age_identity_free(engine_age_identity *id);

/* A list of recipients (heap, not secret). Zero-initialise it; clear frees it. */
typedef struct engine_age_recipients {
    engine_age_recipient *v;
    size_t n;
} engine_age_recipients;

/* A list of identities, each in locked memory. Zero-initialise it; clear wipes and frees. */
typedef struct engine_age_identities {
    engine_age_identity *v[ENGINE_AGE_LIST_MAX];
    size_t n;
} engine_age_identities;

/*
 * Append the recipients of a file in the format of age's -R: one recipient a line, empty lines
 * and lines starting with '#' ignored, white space around a line ignored. A recipient already in
 * the list is not added twice. Returns 0; COFFER_ERR_KEY_FORM ("<path> line N: <why>"),
 * COFFER_ERR_KEY_MISSING (no such file), COFFER_ERR_KEY_READ, COFFER_ERR_TOO_LARGE (a file above
 * ENGINE_AGE_KEYFILE_MAX, or more than ENGINE_AGE_LIST_MAX recipients in all), or
 * COFFER_ERR_INVALID_ARG when the file names no recipient; always with a sentence in detail.
 */
int engine_age_recipients_load(engine_age_recipients *list, const char *path, char *detail,
                               size_t detaillen) COFFER_WUR;
void engine_age_recipients_clear(engine_age_recipients *list);

/*
 * Append the identities of an identity file in the format age-keygen writes (comments starting
 * with '#', one AGE-SECRET-KEY-1... a line; several allowed). The file is read into locked memory
 * and wiped. Errors as engine_age_recipients_load; a sentence never contains a secret.
 */
int engine_age_identities_load(engine_age_identities *list, const char *path, char *detail,
                               size_t detaillen) COFFER_WUR;
void engine_age_identities_clear(engine_age_identities *list);

/*
 * Encrypt pt (ptlen bytes, at most ENGINE_AGE_FILE_MAX / 2) to the nr recipients as one binary
 * age file in a new buffer (*out, malloc: free() it; it holds no secret). A fresh file key,
 * ephemeral keys and payload nonce come from RAND_priv_bytes / RAND_bytes. Returns 0,
 * COFFER_ERR_INVALID_ARG (no recipient, pt too large), COFFER_ERR_KEY_FORM (a recipient that is
 * a low-order point: X25519 gives all zeros) or COFFER_ERR_NOMEM / _INTERNAL.
 */
int engine_age_encrypt(const engine_age_recipient *r, size_t nr, const uint8_t *pt, size_t ptlen,
                       uint8_t **out, size_t *outlen) COFFER_WUR;

/*
 * Decrypt a binary age file (inlen bytes, at most ENGINE_AGE_FILE_MAX) with the identities: the
 * first X25519 stanza one of them opens gives the file key; then the header MAC and every chunk
 * are checked before anything is written to pt (ptcap bytes; on failure it is wiped). Returns 0
 * with *ptlen set; COFFER_ERR_WRONG_KEY (no identity matches any stanza), COFFER_ERR_BAD_HEADER
 * (not age v1, or a malformed header or X25519 stanza), COFFER_ERR_TAMPERED (header MAC or a
 * chunk fails), COFFER_ERR_TRUNCATED, COFFER_ERR_TOO_LARGE (plaintext above ptcap, or inlen above
 * the limit); with one sentence in detail (NULL allowed).
 */
int engine_age_decrypt(const engine_age_identities *ids, const uint8_t *in, size_t inlen,
                       uint8_t *pt, size_t ptcap, size_t *ptlen, char *detail,
                       size_t detaillen) COFFER_WUR;

/*
 * Base64 as the age header writes it (RFC 4648 standard alphabet, no padding), for the header
 * and for callers that read age's key material. encode: out needs 4 * ceil(n / 3) + 1 bytes,
 * returns the length written (NUL-terminated). decode: canonical unpadded input only; returns
 * the byte count, or -1 when the text is not canonical or does not fit outcap.
 */
size_t engine_age_b64_encode(const uint8_t *in, size_t n, char *out);
long engine_age_b64_decode(const char *in, size_t n, uint8_t *out, size_t outcap);

#endif
