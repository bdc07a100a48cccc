/* SPDX-License-Identifier: Apache-2.0 */
/* Internal: handing a PKCS#11 operation to the client's HSM threads and waiting with a timeout. */
#ifndef HSM_REQUEST_H
#define HSM_REQUEST_H

#include "hsm_client.h"
#include "hsm_token.h"

/*
 * Run op(token, thread's session, payload, st) on an HSM thread inside hsm_token_run (so it
 * connects first and is retried once after a reconnect) and wait at most the client's timeout.
 *
 * Ownership of payload: on any return other than COFFER_ERR_HSM_TIMEOUT the payload is the
 * caller's again (read the results, then free it). After a timeout the client owns it and frees
 * it with payload_free once the HSM thread is done with it (at once when it had not started).
 * Payloads that carry key material should live in engine_secmem and payload_free wipe them.
 *
 * what names the operation in the timeout sentence ("wrap with key 'kek-1'").
 * Failures are recorded as the client's last error; st (never NULL here) gets this call's.
 */
int hsm_client_call(hsm_client *c, const char *what, hsm_token_op op, void *payload,
                    void (*payload_free)(void *), hsm_status *st);

/*
 * The same without waiting: queue op and return. done(ctx, result, st, payload) is called exactly
 * once, on a thread of the client (possibly before hsm_client_submit returns), when:
 *  - the call ended: result and st are the call's, payload is the payload (read the results
 *    during done; the client frees it with payload_free afterwards);
 *  - its deadline (the client's timeout) passed first: result COFFER_ERR_HSM_TIMEOUT and payload
 *    NULL (called on the client's watchdog thread; the call, if it started, goes on and its
 *    payload is freed when it ends);
 *  - the client is closing: COFFER_ERR_SHUTDOWN, payload NULL.
 * done must not block for long and must not call hsm_client_close. Returns 0 (done will be
 * called), or COFFER_ERR_NOMEM / COFFER_ERR_SHUTDOWN when nothing was queued (done is not called
 * and payload is the caller's).
 */
typedef void (*hsm_done_fn)(void *ctx, int result, const hsm_status *st, void *payload);
int hsm_client_submit(hsm_client *c, const char *what, hsm_token_op op, void *payload,
                      void (*payload_free)(void *), hsm_done_fn done, void *ctx) COFFER_WUR;

#endif
