/* SPDX-License-Identifier: Apache-2.0 */
/* Recovery in the CLI: 'coffer recovery', recipients on offline encryption, identity and HSM
 * restores. */
#ifndef CLI_RECOVERY_H
#define CLI_RECOVERY_H

#include "cli_args.h"
#include "engine_key.h"
#include "engine_metadata.h"

/*
 * coffer recovery keygen   [--out FILE]   a new age identity in age-keygen's format ("# created",
 *                                         "# public key: age1...", "AGE-SECRET-KEY-1..."); with
 *                                         --out the file is created 0600 and never overwritten,
 *                                         and the recipient is printed on stderr
 * coffer recovery recipient [--in FILE]   the recipient of every identity in an identity file
 *                                         (as age-keygen -y), one a line: a recipients file
 * argv[0] is the program, argv[1] "recovery". Returns the exit status (0, 1, or 2 on a usage
 * error).
 */
int cli_recovery_main(int argc, char **argv);

/*
 * Offline encryption: *meta (malloc'd metadata text) gets the "recovery" field for key and every
 * recipient of a->recovery_recipient's files; nothing changes without them. Reports its failure.
 */
int cli_recovery_seal(const struct cli_args *a, const engine_key *key, char **meta);

/*
 * Offline decryption of coffer-v1 with --recovery-identity: the key from the header's recovery
 * entries. Reports its failure as "<what>: ...".
 */
int cli_recovery_open(engine_key **key, const struct cli_args *a, const engine_metadata *m,
                      const char *what);

/*
 * Offline decryption of a pkcs11 backup with --hsm-module/--hsm-token: the token unwraps the data
 * key named by the header (no daemon). Reports its failure, naming the token and key label.
 */
int cli_recovery_hsm_open(engine_key **key, const struct cli_args *a, const engine_metadata *m,
                          const char *what);

/*
 * The sentence for a coffer-v1 backup decrypted offline with no key source: what its header needs
 * (its Secret, or its HSM token and key label) and, when it has recovery recipients, that one of
 * their identities would open it too. Written to detail.
 */
void cli_recovery_needs(const engine_metadata *m, char *detail, size_t detaillen);

/* coffer inspect --recipients: the header's recovery recipients, one a line on stdout. */
int cli_recovery_print_recipients(const engine_metadata *m, const char *what);

#endif
