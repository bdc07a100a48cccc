/* SPDX-License-Identifier: Apache-2.0 */
/* The 'coffer hsm' subcommands: create a key-encryption key, list keys and tokens, check a setup.
 */
#ifndef CLI_HSM_H
#define CLI_HSM_H

/*
 * coffer hsm init-kek --module M --token T --label L [--pin-file F] [--timeout MS]
 * coffer hsm list     --module M [--token T [--pin-file F]] [--timeout MS]
 * coffer hsm check    --module M --token T --label L [--pin-file F] [--timeout MS]
 *
 * argv[0] is the program and argv[1] is "hsm" (coffer_main passes its argc/argv unchanged).
 * The PIN comes from --pin-file or else the environment variable COFFER_HSM_PIN, never from the
 * command line (--pin is refused with that explanation). M is a module path or a p11-kit module
 * name. 'list' without --token lists the module's tokens and needs no PIN.
 *
 * Returns the exit status: 0 on success ('check': only when every check passed), 1 when the
 * operation failed (one line on stderr says what and why; 'check' prints one line per check on
 * stdout), 2 on a usage error.
 */
int cli_hsm_main(int argc, char **argv);

#endif
