/* SPDX-License-Identifier: Apache-2.0 */
/* The CLI's one way of telling the user what failed: one line on stderr, never key bytes. */
#ifndef CLI_REPORT_H
#define CLI_REPORT_H

/* Exit statuses of the coffer program. */
#define CLI_EXIT_OK    0 /* full success */
#define CLI_EXIT_FAIL  1 /* the job failed; one line on stderr says why */
#define CLI_EXIT_USAGE 2 /* the command line was wrong; a usage line follows the message */

/*
 * Print "coffer: <what>: <coffer_strerror(code)>[: <detail>]" and a newline on stderr. detail may
 * be NULL or empty. Control characters (which untrusted metadata could carry into a detail) are
 * printed as '?'. The functions that call this return the code to their caller, which does not
 * report it again: every failure is reported exactly once, where it is best described.
 */
void cli_report_error(const char *what, int code, const char *detail);

/* Print "coffer: <message>" and a newline on stderr (printf-style, same sanitising). */
void cli_report_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
