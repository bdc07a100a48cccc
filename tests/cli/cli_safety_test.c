/* SPDX-License-Identifier: Apache-2.0 */
/* The CLI never destroys data and says what is wrong: path clashes, key files, options, warnings.
 */
#include "cli_harness.h"
#include "test_daemon.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One cofferd (velero/coffer-key from 'coffer keygen') in a private directory. */
static char *d_tmp;
static char d_secrets[PATH_MAX];
static struct ts_daemon d_main;

static int d_start(struct ts_daemon *d, const char *name, ...)
{
    char *flags[] = {
        "--secrets-dir", d_secrets, "--namespace",         "velero",     "--workers", "2",
        "--io-timeout",  "60",      "--encryption-secret", "coffer-key", NULL};
    va_list ap;
    int r;

    ts_daemon_paths(d, d_tmp, name);
    va_start(ap, name);
    r = ts_daemon_vstart(d, flags, NULL, 1000, ap);
    va_end(ap);
    if (r == 0 && d->pid > 0)
        return 0;
    fprintf(stderr, "cofferd %s did not start (%d, see %s)\n", name, r, d->log);
    return -1;
}

static int group_setup(void **state)
{
    char path[PATH_MAX + 64];
    char *argv[] = {(char *)ts_bin("coffer"), "keygen", "--out", path, NULL};
    (void)state;

    d_tmp = ts_tmpdir();
    snprintf(d_secrets, sizeof(d_secrets), "%s/secrets", d_tmp);
    if (mkdir(d_secrets, 0700) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/velero", d_secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", d_secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", d_secrets);
    if (ts_run(argv, NULL, NULL, NULL, NULL) != 0)
        return -1;
    return d_start(&d_main, "main", NULL);
}

static int group_teardown(void **state)
{
    int r = ts_daemon_stop(&d_main);
    (void)state;
    ts_rmtree(d_tmp);
    free(d_tmp);
    return r == 0 ? 0 : -1;
}

/* ---- helpers ---- */

static int has(const char *needle)
{
    int found = h_contains(h_p("stderr"), needle);
    if (!found) {
        size_t len = 0;
        uint8_t *err = h_read(h_p("stderr"), &len);
        fprintf(stderr, "expected '%s' on stderr, got: %.*s\n", needle, (int)len, (char *)err);
        free(err);
    }
    return found;
}

static void make_key(const char *name, mode_t mode)
{
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p(name), NULL), 0);
    assert_int_equal(chmod(h_p(name), mode), 0);
}

/* The file still holds exactly want (n bytes). */
static void check_untouched(const char *path, const uint8_t *want, size_t n)
{
    size_t len = 0;
    uint8_t *got = h_read(path, &len);
    assert_int_equal(len, n);
    assert_memory_equal(got, want, n);
    free(got);
}

/* ---- --status-out never replaces the job's input, output, key or metadata ---- */

/*
 * Each clash, offline (with extra args: the key) and through cofferd (extra NULL): refused with
 * exit 2 before anything is written; the files keep their bytes and nothing new appears.
 */
static void check_clashes(const char *const *extra, int decrypt)
{
    uint8_t *pt = h_write_random(h_p("in"), 5000, 7);
    const char *ln[] = {"lnk", "hard"};
    int before;

    assert_int_equal(symlink(h_p("in"), h_p("lnk")), 0);
    assert_int_equal(link(h_p("in"), h_p("hard")), 0);
    h_write(h_p("stderr"), "", 0);
    before = h_count_entries();
#define RUN(stdin_path, stdout_path, ...)                                                          \
    do {                                                                                           \
        const char *args[32] = {__VA_ARGS__, NULL};                                                \
        size_t n = 0;                                                                              \
        while (args[n] != NULL)                                                                    \
            n++;                                                                                   \
        for (size_t k = 0; extra != NULL && extra[k] != NULL; k++)                                 \
            args[n++] = extra[k];                                                                  \
        args[n] = NULL;                                                                            \
        assert_int_equal(h_coffer_argv(stdin_path, stdout_path, args), 2);                         \
        assert_true(has("--status-out"));                                                          \
        assert_true(has("would destroy it"));                                                      \
        check_untouched(h_p("in"), pt, 5000);                                                      \
        assert_int_equal(h_count_entries(), before);                                               \
    } while (0)
    /* the same path as the input, as a descriptor job and a streamed one */
    RUN(NULL, NULL, "encrypt", "--in", h_p("in"), "--out", h_p("out"), "--status-out", h_p("in"));
    RUN(NULL, NULL, "encrypt", "--in", h_p("in"), "--status-out", h_p("in"));
    /* the same file through a symlink and a hard link, both ways */
    for (int i = 0; i < 2; i++) {
        RUN(NULL, NULL, "encrypt", "--in", h_p("in"), "--out", h_p("out"), "--status-out",
            h_p(ln[i]));
        RUN(NULL, NULL, "encrypt", "--in", h_p(ln[i]), "--out", h_p("out"), "--status-out",
            h_p("in"));
    }
    /* the output, which does not exist yet, under another spelling of its path */
    {
        char dotted[PATH_MAX];
        snprintf(dotted, sizeof(dotted), "%s/./out", h_dir());
        RUN(NULL, NULL, "encrypt", "--in", h_p("in"), "--out", h_p("out"), "--status-out", dotted);
    }
    /* the regular file behind standard input, or behind standard output */
    RUN(h_p("in"), NULL, "encrypt", "--status-out", h_p("in"));
    h_write(h_p("sout"), "x", 1);
    before++;
    RUN(NULL, h_p("sout"), "encrypt", "--in", h_p("hard"), "--status-out", h_p("sout"));
    /* a decrypt's status onto its input */
    if (decrypt)
        RUN(NULL, NULL, "decrypt", "--in", h_p("in"), "--out", h_p("out"), "--status-out",
            h_p("lnk"));
#undef RUN
    free(pt);
}

static void test_status_out_clash_offline(void **state)
{
    (void)state;
    make_key("k", 0600);
    const char *extra[] = {"--offline", "--key-file", h_p("k"), NULL};
    /* offline decrypt takes no --status-out at all: the encrypt cases */
    check_clashes(extra, 0);
    /* the key file is never replaced, by the status or by the output */
    size_t klen = 0;
    uint8_t *key = h_read(h_p("k"), &klen);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("k"), "--in",
                              h_p("in"), "--out", h_p("o"), "--status-out", h_p("k"), NULL),
                     2);
    assert_true(has("--key-file"));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("k"), "--in",
                              h_p("in"), "--out", h_p("k"), NULL),
                     2);
    assert_true(has("--out"));
    check_untouched(h_p("k"), key, klen);
    free(key);
    assert_false(h_exists(h_p("o")));
    /* a status file of its own is still written */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("k"), "--in",
                              h_p("in"), "--out", h_p("o"), "--status-out", h_p("s.json"), NULL),
                     0);
    h_file_check_0600(h_p("s.json"));
}

static void test_status_out_clash_daemon(void **state)
{
    const char *extra[] = {"--socket", d_main.sock, NULL};
    (void)state;
    check_clashes(extra, 1);
    /* the stored metadata of a restore is not replaced either */
    uint8_t *pt = h_write_random(h_p("in"), 100, 3);
    free(pt);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("in"),
                              "--out", h_p("c"), "--status-out", h_p("m.json"), NULL),
                     0);
    size_t mlen = 0;
    uint8_t *m = h_read(h_p("m.json"), &mlen);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("m.json"), "--in", h_p("c"), "--out", h_p("p"), "--status-out",
                              h_p("m.json"), NULL),
                     2);
    check_untouched(h_p("m.json"), m, mlen);
    free(m);
    assert_false(h_exists(h_p("p")));
}

/* ---- key files ---- */

static void test_key_file_mode_warning(void **state)
{
    (void)state;
    free(h_write_random(h_p("in"), 1000, 1));
    make_key("k", 0644);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("k"), "--in",
                              h_p("in"), "--out", h_p("o"), NULL),
                     0);
    assert_true(has("warning: the key file"));
    assert_true(has("0644"));
    assert_true(has("chmod 600"));
    assert_true(h_exists(h_p("o")));
    assert_int_equal(chmod(h_p("k"), 0640), 0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("k"), "--in",
                              h_p("o"), "--out", h_p("back"), NULL),
                     0);
    assert_true(has("its group"));
    assert_int_equal(chmod(h_p("k"), 0600), 0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("k"), "--in",
                              h_p("o"), "--out", h_p("back"), NULL),
                     0);
    h_stderr_check_empty();
}

static void test_key_file_stdin(void **state)
{
    (void)state;
    uint8_t *pt = h_write_random(h_p("in"), 20000, 5);
    make_key("k", 0600);
    /* "-" reads the key from standard input, as docs/cli.md says of every file name */
    assert_int_equal(h_coffer(h_p("k"), NULL, "encrypt", "--offline", "--key-file", "-", "--in",
                              h_p("in"), "--out", h_p("o"), NULL),
                     0);
    h_stderr_check_empty();
    assert_int_equal(h_coffer(NULL, h_p("back"), "decrypt", "--offline", "--key-file", h_p("k"),
                              "--in", h_p("o"), NULL),
                     0);
    check_untouched(h_p("back"), pt, 20000);
    assert_int_equal(h_coffer(h_p("k"), h_p("back2"), "decrypt", "--offline", "--key-file", "-",
                              "--in", h_p("o"), NULL),
                     0);
    check_untouched(h_p("back2"), pt, 20000);
    /* ...and so cannot be the data's source as well */
    assert_int_equal(h_coffer(h_p("k"), h_p("x"), "encrypt", "--offline", "--key-file", "-", NULL),
                     2);
    assert_true(has("--key-file - reads the key from standard input"));
    assert_int_equal(
        h_coffer(h_p("k"), h_p("x"), "decrypt", "--offline", "--key-file", "-", "--in", "-", NULL),
        2);
    /* a bad key on standard input is named as such */
    h_write(h_p("bad"), "short\n", 6);
    assert_int_equal(h_coffer(h_p("bad"), NULL, "encrypt", "--offline", "--key-file", "-", "--in",
                              h_p("in"), "--out", h_p("o2"), NULL),
                     1);
    assert_true(has("standard input"));
    assert_false(h_exists(h_p("o2")));
    free(pt);
}

/* A key file with the given text: the job fails with one line that holds every needle. */
static void check_key_form(const char *text, const char *n1, const char *n2)
{
    h_write(h_p("kf"), text, strlen(text));
    chmod(h_p("kf"), 0600);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("kf"), "--in",
                              h_p("in"), "--out", h_p("o"), NULL),
                     1);
    assert_true(has(n1));
    if (n2 != NULL)
        assert_true(has(n2));
    assert_false(h_exists(h_p("o")));
}

static void test_key_form_errors(void **state)
{
    char good[64], text[80];
    size_t n = 0;
    (void)state;
    free(h_write_random(h_p("in"), 10, 2));
    make_key("k", 0600);
    uint8_t *k = h_read(h_p("k"), &n);
    assert_int_equal(n, 45); /* 44 base64 characters and a newline */
    memcpy(good, k, 44);
    good[44] = '\0';
    free(k);

    /* trailing whitespace other than one newline */
    snprintf(text, sizeof(text), "%s  \n", good);
    check_key_form(text, "ends with 2 whitespace characters", "offset 44");
    snprintf(text, sizeof(text), "%s\n\n", good);
    check_key_form(text, "ends with 1 whitespace character ", "at most one newline");
    /* whitespace inside */
    snprintf(text, sizeof(text), "%.20s %s\n", good, good + 20);
    check_key_form(text, "whitespace (0x20) at offset 20", NULL);
    /* a character outside base64, and where */
    snprintf(text, sizeof(text), "%s\n", good);
    text[7] = '!';
    check_key_form(text, "not base64 or hex (0x21 '!') at offset 7", "44 base64");
    /* the base64url alphabet */
    snprintf(text, sizeof(text), "%s\n", good);
    text[3] = '_';
    text[9] = '-';
    check_key_form(text, "base64url", "offset 3");
    /* wrong lengths name the length */
    snprintf(text, sizeof(text), "%.43s\n", good);
    check_key_form(text, "43 characters", "44");
    snprintf(text, sizeof(text), "%.40s\n", good);
    check_key_form(text, "decodes to 30 bytes", NULL);
    /* and the exact key still works, with and without its newline */
    h_write(h_p("kf"), good, 44);
    chmod(h_p("kf"), 0600);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("kf"), "--in",
                              h_p("in"), "--out", h_p("o"), NULL),
                     0);
}

/* ---- options ---- */

static void test_unknown_option_named_alike(void **state)
{
    const char *forms[][3] = {
        {"--bogus", NULL, NULL}, {"--bogus=x", NULL, NULL}, {"--bogus", "x", NULL}};
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        const char *args[] = {"encrypt", forms[i][0], forms[i][1], NULL};
        assert_int_equal(h_coffer_argv(NULL, NULL, args), 2);
        assert_true(has("coffer: unknown option '--bogus'\n"));
    }
    const char *noval[] = {"encrypt", "--offline=yes", NULL};
    assert_int_equal(h_coffer_argv(NULL, NULL, noval), 2);
    assert_true(has("option '--offline' takes no value"));
    const char *needs[] = {"encrypt", "--in", NULL};
    assert_int_equal(h_coffer_argv(NULL, NULL, needs), 2);
    assert_true(has("option '--in' needs a value"));
    /* --version exists and names the version */
    const char *ver[] = {"--version", NULL};
    assert_int_equal(h_coffer_argv(NULL, h_p("v"), ver), 0);
    assert_true(h_contains(h_p("v"), "coffer "));
}

/* ---- the daemon's side of a job ---- */

/* A backup cofferd keyed with its Secret because the HSM failed says so on stderr. */
static void test_hsm_fallback_warning(void **state)
{
    struct ts_daemon d = {0};
    (void)state;
    h_write(h_p("pin"), "1234\n", 5);
    chmod(h_p("pin"), 0600);
    uint8_t *pt = h_write_random(h_p("in"), 3000, 9);
    assert_int_equal(d_start(&d, "hsm", "--hsm-module", "/nonexistent/libnope-pkcs11.so",
                             "--hsm-token", "coffer", "--hsm-key", "kek-1", "--hsm-pin-file",
                             h_p("pin"), "--hsm-timeout", "5000", "--hsm-fallback", "secret", NULL),
                     0);
    /* descriptors and a stream alike */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d.sock, "--in", h_p("in"), "--out",
                              h_p("c1"), "--status-out", h_p("s1"), NULL),
                     0);
    assert_true(has("warning: cofferd could not use the HSM"));
    assert_true(has("HSM_MODULE"));
    assert_true(has("Secret velero/coffer-key"));
    assert_true(h_contains(h_p("s1"), "hsmFallback"));
    assert_int_equal(h_coffer(h_p("in"), h_p("c2"), "encrypt", "--socket", d.sock, NULL), 0);
    assert_true(has("warning: cofferd could not use the HSM"));
    /* the restore needs only the Secret and warns of nothing */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d.sock, "--in", h_p("c1"), "--out",
                              h_p("back"), NULL),
                     0);
    h_stderr_check_empty();
    check_untouched(h_p("back"), pt, 3000);
    /* a daemon without an HSM: no warning */
    assert_int_equal(h_coffer(h_p("in"), h_p("c3"), "encrypt", "--socket", d_main.sock, NULL), 0);
    h_stderr_check_empty();
    assert_int_equal(ts_daemon_stop(&d), 0);
    free(pt);
}

/* Wait up to 20 s for the log to hold needle at least n times. */
static int log_wait(const struct ts_daemon *d, const char *needle, int n)
{
    for (int i = 0; i < 2000; i++) {
        if (ts_count_in_file(d->log, needle) >= n)
            return 1;
        usleep(10000);
    }
    fprintf(stderr, "'%s' not %d times in %s\n", needle, n, d->log);
    return 0;
}

/* Every failed job is in the daemon's log: a tampered restore, and a client gone mid-job. */
static void test_failed_jobs_logged(void **state)
{
    (void)state;
    int base = ts_count_in_file(d_main.log, "event=job_failed");
    int gone = ts_count_in_file(d_main.log, "err=PEER_GONE");
    free(h_write_random(h_p("in"), 70000, 4));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("in"),
                              "--out", h_p("c"), NULL),
                     0);
    size_t n = 0;
    uint8_t *c = h_read(h_p("c"), &n);
    c[n - 100] ^= 1;
    h_write(h_p("t"), c, n);
    free(c);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("t"),
                              "--out", h_p("p"), NULL),
                     1);
    assert_true(log_wait(&d_main, "event=job_failed", base + 1));
    assert_true(h_contains(d_main.log, "err=TAMPERED"));

    /* a descriptor job whose input is a FIFO that stays silent: the client is killed mid-job */
    assert_int_equal(mkfifo(h_p("fifo"), 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(ts_bin("coffer"), "coffer", "encrypt", "--socket", d_main.sock, "--in", h_p("fifo"),
              "--out", h_p("fo"), (char *)NULL);
        _exit(127);
    }
    int wfd = open(h_p("fifo"), O_WRONLY); /* blocks until coffer opened it for reading */
    assert_true(wfd >= 0);
    assert_true(write(wfd, "some bytes", 10) == 10);
    assert_true(log_wait(&d_main, "input=fds", 1) || 1);
    usleep(300000); /* the job is under way in cofferd */
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(log_wait(&d_main, "err=PEER_GONE", gone + 1));
    close(wfd);
    assert_false(h_exists(h_p("fo")));

    /*
     * a streamed client that leaves with the daemon's output unread: its close resets the
     * connection, cofferd's recv fails (not a clean EOF), and the job is still logged as failed
     */
    {
        static const uint8_t hello[] = {1,   0,   0, 0, 0, 0, 0, 12, 'C', 'O',
                                        'F', 'R', 0, 1, 0, 1, 0, 2,  0,   0};
        static const uint8_t job[] = {2, 0, 0, 0, 0, 0, 0, 11, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        static uint8_t data[8 + 65536] = {3, 0, 0, 0, 0, 1, 0, 0}; /* DATA, 65536 bytes */
        uint8_t reply[20];
        int before = ts_count_in_file(d_main.log, "err=PEER_GONE");
        int fd = ts_daemon_connect(d_main.sock);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, hello, sizeof(hello)), (ssize_t)sizeof(hello));
        assert_int_equal(read(fd, reply, sizeof(reply)), (ssize_t)sizeof(reply));
        assert_int_equal(write(fd, job, sizeof(job)), (ssize_t)sizeof(job));
        assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
        usleep(300000); /* cofferd encrypts and sends; nobody reads it */
        close(fd);
        assert_true(log_wait(&d_main, "err=PEER_GONE", before + 1));
    }
    /* and the daemon serves the next client */
    assert_int_equal(h_coffer(NULL, NULL, "health", "--socket", d_main.sock, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_out_clash_offline, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_status_out_clash_daemon, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_key_file_mode_warning, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_key_file_stdin, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_key_form_errors, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_option_named_alike, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_hsm_fallback_warning, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_failed_jobs_logged, h_setup, h_teardown),
    };
    if (getenv("COFFER_TEST_FILTER") != NULL) /* e.g. test_key_file_stdin */
        cmocka_set_test_filter(getenv("COFFER_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
