/* SPDX-License-Identifier: Apache-2.0 */
/* An HSM client: one PKCS#11 token served by dedicated HSM threads that callers wait on with a
 * timeout, or hand work to with a completion callback (asynchronous submit). */
#ifndef HSM_CLIENT_H
#define HSM_CLIENT_H

#include "engine_gcm.h"
#include "hsm_pin.h"
#include "hsm_status.h"

#define HSM_TIMEOUT_DEFAULT_MS 5000
#define HSM_THREADS_DEFAULT    2
#define HSM_THREADS_MAX        16

/*
 * What to connect to. Strings are copied by hsm_client_open.
 *
 * module   a path to a PKCS#11 module (anything containing '/'), loaded with
 *          p11_kit_module_load(path, 0) as a *managed* module (p11-kit initialises it with OS
 *          locking, so several threads may call it), or the name of a module registered with
 *          p11-kit ("softhsm2"; 'p11-kit list-modules' shows them).
 * token    the token's label. Slot ids change whenever a token is initialised, labels do not.
 *          NULL for a client that only lists the module's tokens.
 * key_label the label of the key-encryption key (an AES secret key) that wraps new data keys.
 *          Unwrapping uses the label stored with each backup instead. May be NULL when the
 *          client is used only for restores or administration.
 * pin      where the user PIN is read from at each login: a file, or an environment variable
 *          (default COFFER_HSM_PIN). Never the command line. See hsm_pin.h.
 * timeout_ms how long a caller waits for an answer (0: HSM_TIMEOUT_DEFAULT_MS). It covers the
 *          queue, the (re)connect and the PKCS#11 call.
 * threads  HSM threads (0: HSM_THREADS_DEFAULT, at most HSM_THREADS_MAX). Each has its own
 *          PKCS#11 session; login is per token and shared.
 * log      receives one line per event worth an operator's attention (connected, connection
 *          lost, a connect failure when it differs from the previous one, timeouts). The lines
 *          name modules, tokens and key labels, never a PIN or key bytes. May be NULL. It is
 *          called from HSM threads (sometimes holding the connection lock) and from callers,
 *          possibly at the same time; it must not call back into the client.
 * mechanism how data keys are wrapped (hsm_mech in hsm_kek.h): 0 negotiates with the token at
 *          the first wrap after each (re)connect; another value is the only one accepted.
 * max_sessions at most this many PKCS#11 sessions for the HSM threads (0: as many as threads,
 *          and never more than the token's ulMaxSessionCount less one for the login). Threads
 *          beyond it wait for a free session; a token that answers CKR_SESSION_COUNT lowers it.
 *
 * The client is thread-safe: any number of threads may call it at once. It is not fork-safe:
 * open it in the process that uses it, after any fork.
 */
typedef struct hsm_client_config {
    const char *module;
    const char *token;
    const char *key_label;
    hsm_pin_source pin;
    unsigned timeout_ms;
    unsigned threads;
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    int mechanism;
    unsigned max_sessions;
} hsm_client_config;

typedef struct hsm_client hsm_client;

/*
 * Start the HSM threads. Nothing is loaded yet: the first call (or hsm_client_connect) loads the
 * module, finds the token, logs in and finds the key, so a daemon starts even while its HSM is
 * away. Returns 0, COFFER_ERR_CONFIG (st says which setting) or _NOMEM.
 */
int hsm_client_open(hsm_client **out, const hsm_client_config *cfg, hsm_status *st) COFFER_WUR;

/*
 * Stop the HSM threads and unload the module. No call may be in progress or start during close.
 * Waits for a PKCS#11 call in progress at most the client's timeout; an HSM thread still stuck
 * after that is detached and cleans up after itself when (if ever) the call returns. NULL is
 * allowed.
 */
void hsm_client_close(hsm_client *c);

/*
 * How many HSM threads (of every client of the process) are inside a PKCS#11 call right now,
 * including threads hsm_client_close left behind. A process about to exit while this is not 0
 * must not finalize the module or OpenSSL under them (no OPENSSL_cleanup, no p11-kit
 * finalization, no exit() with its atexit handlers): end with _exit instead. Any thread.
 */
int hsm_client_calls_in_progress(void);

/*
 * Connect now (module, token, login, and the key when key_label is set) and report the first
 * step that fails. Connecting again after success costs nothing.
 *
 * Every call below connects when needed. A call whose PKCS#11 return value means the token went
 * away (SoftHSM2 says CKR_GENERAL_ERROR or an invalid-handle error when its files vanish, real
 * tokens CKR_DEVICE_REMOVED or CKR_TOKEN_NOT_PRESENT) marks the connection broken and is retried
 * once after a reconnect (finalize and reload the module, reopen the sessions, log in again,
 * find the key again); when that fails, the next call tries again. So when the HSM comes back,
 * calls work again without a restart.
 *
 * A login refused with CKR_PIN_INCORRECT is not retried with the same PIN (a real token locks
 * itself after a few wrong PINs): the PIN source is read at each attempt and only a changed PIN
 * is tried.
 *
 * Every call returns COFFER_ERR_HSM_TIMEOUT when no answer came within the timeout. The call
 * goes on in its HSM thread and its result is dropped; the client stays usable, and later calls
 * succeed once the token answers again.
 */
int hsm_client_connect(hsm_client *c, hsm_status *st) COFFER_WUR;

/*
 * hsm_client_connect without waiting: done(ctx, result, st) runs exactly once on a thread of the
 * client (an HSM thread, or its watchdog with COFFER_ERR_HSM_TIMEOUT at the timeout, or
 * COFFER_ERR_SHUTDOWN when the client closes first), possibly before this returns; it must not
 * block for long nor close the client. Returns 0, or COFFER_ERR_NOMEM / _SHUTDOWN when nothing
 * was queued (done does not run). Any thread.
 */
int hsm_client_connect_submit(hsm_client *c, void (*done)(void *ctx, int r, const hsm_status *st),
                              void *ctx) COFFER_WUR;

/*
 * The last failure of any call of this client (code 0 when nothing has failed yet): for the
 * fallback metadata ("what was tried and why it failed") and for health reports.
 */
void hsm_client_last_error(hsm_client *c, hsm_status *out);

/* The configuration as given (strings owned by the client). */
const char *hsm_client_module(const hsm_client *c);
const char *hsm_client_token(const hsm_client *c);
const char *hsm_client_key_label(const hsm_client *c);
unsigned hsm_client_timeout_ms(const hsm_client *c);
int hsm_client_mechanism(const hsm_client *c); /* hsm_mech as configured (0: negotiate) */

#endif
