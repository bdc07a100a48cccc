/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's main: hardening, configuration, keys, the listening socket, workers and signals. */
#include "uring_server.h"

#include "coffer_error.h"
#include "engine_secret.h"
#include "uring_listen.h"
#include "uring_log.h"
#include "uring_systemd.h"
#include "uring_metrics.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int main_socket_activated; /* the socket came from systemd: never unlink it */

static void main_harden(void)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        fprintf(stderr, "cofferd: cannot disable core dumps: %s\n", strerror(errno));
        exit(1);
    }
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, mode) != 0 && errno != EEXIST ? -1 : 0;
}

/* --dev: make ./.coffer-dev/secrets/<ns>/<name>/encryptionKey (0600) when it does not exist. */
static int main_dev_key(const struct uring_config *cfg)
{
    int r = COFFER_ERR_INTERNAL;
    char dir[4096 + 400], path[4096 + 420];
    engine_key *k = NULL;
    int fd = -1;

    if (engine_secret_name_check(cfg->ns, cfg->secret) != 0)
        return COFFER_ERR_SECRET_NAME;
    snprintf(dir, sizeof(dir), "%s/%s/%s", cfg->secrets_dir, cfg->ns, cfg->secret);
    snprintf(path, sizeof(path), "%s/%s", dir, ENGINE_SECRET_FIELD);
    if (access(path, F_OK) == 0)
        return 0;
    if (mkdir_p(dir, 0700) != 0) {
        fprintf(stderr, "cofferd: --dev: cannot create %s: %s\n", dir, strerror(errno));
        return COFFER_ERR_IO;
    }
    if ((r = engine_key_generate(&k, 32)) != 0)
        goto out;
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
        write(fd, k->bytes, k->len) != (ssize_t)k->len || fsync(fd) != 0) {
        fprintf(stderr, "cofferd: --dev: cannot write %s: %s\n", path, strerror(errno));
        r = COFFER_ERR_IO;
        goto out;
    }
    fprintf(stderr,
            "\n"
            "************************************************************************\n"
            "* cofferd --dev CREATED A NEW DEVELOPMENT KEY (keyId %s)\n"
            "*   %s\n"
            "* Backups encrypted with it are lost if this file is lost. Never use\n"
            "* --dev in production: create a real key with 'coffer keygen'.\n"
            "************************************************************************\n\n",
            k->id, path);
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    engine_key_free(k);
    return r;
}

/*
 * The socket's directory: a missing last component is created with mode 0755 (the socket itself
 * is 0660 and peers are checked at accept). On failure says which directory and what to do.
 */
static int main_socket_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *slash;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s", path);
    if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
        return 0;
    *slash = '\0';
    if (stat(dir, &st) == 0)
        return 0;
    if (errno == ENOENT && mkdir(dir, 0755) == 0)
        return chmod(dir, 0755); /* not masked by cofferd's umask 077 */
    if (errno == EEXIST)
        return 0;
    {
        int e = errno;
        fprintf(stderr,
                "cofferd: cannot create the socket's directory %s: %s\n"
                "cofferd: create it for the user cofferd runs as (e.g. install -d -m 0755 -o "
                "USER %s), or choose another --socket\n",
                dir, strerror(e), dir);
        errno = e;
    }
    return -1;
}

/*
 * Called by the main thread every couple of seconds: once cofferd is idle after traffic, give
 * the heap's free pages back. Descriptor jobs free 512 KiB buffers, after which glibc raises its
 * mmap threshold and keeps later ones in its arenas; without this, RSS stays near its peak (the
 * soak test saw 20 MiB grow to 55 MiB and stay). Never on a ring thread: malloc_trim walks the
 * arenas under their locks.
 */
static void main_idle_trim(void)
{
    static unsigned long long trimmed_at;
    unsigned long long total = atomic_load(&uring_srv.stats.conns_total);

    if (atomic_load(&uring_srv.active_conns) != 0 || total == trimmed_at)
        return;
    trimmed_at = total;
    malloc_trim(0);
}

/* The threads of this process now (/proc/self/task), or -1 when it cannot be read. */
static int main_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* --dev: where the socket is and how coffer finds it. */
static void main_dev_banner(const char *sock)
{
    char abs[PATH_MAX];
    if (realpath(sock, abs) == NULL)
        snprintf(abs, sizeof(abs), "%s", sock);
    fprintf(stderr,
            "cofferd --dev: listening on %s\n"
            "cofferd --dev: 'coffer' run in this directory finds it while\n"
            "cofferd --dev: /run/coffer/cofferd.sock does not exist; elsewhere run\n"
            "    export COFFER_SOCKET=%s\n",
            abs, abs);
}

static void main_no_key(int r, const char *detail, const struct uring_config *cfg)
{
    if (cfg->kube.source == URING_SECRET_KUBERNETES) {
        uring_kube_no_key(r, detail, cfg->ns, cfg->secret, &cfg->kube);
        return;
    }
    uring_log(URING_LOG_ERROR, "start_failed", "err=%s namespace=%s secret=%s secrets_dir=%s",
              coffer_errname(r), cfg->ns, cfg->secret, cfg->secrets_dir);
    fprintf(stderr,
            "cofferd: cannot load the key of new backups: %s%s%s\n"
            "cofferd: expected %s/%s/%s/%s\n"
            "cofferd: create one with:\n"
            "    coffer keygen > key && install -D -m 0600 key %s/%s/%s/%s\n"
            "  or, in Kubernetes:\n"
            "    kubectl -n %s create secret generic %s --from-file=%s=key\n"
            "  or start with --encryption off, or try it out with --dev.\n",
            coffer_strerror(r), detail[0] != '\0' ? ": " : "", detail, cfg->secrets_dir, cfg->ns,
            cfg->secret, ENGINE_SECRET_FIELD, cfg->secrets_dir, cfg->ns, cfg->secret,
            ENGINE_SECRET_FIELD, cfg->ns, cfg->secret, ENGINE_SECRET_FIELD);
}

/*
 * Options a reload cannot change in the running daemon (sockets, threads and tables are sized
 * at start): their names, comma-separated, into buf when cfg differs from the running one.
 */
static void main_restart_only(const struct uring_config *cfg, char *buf, size_t cap)
{
    const struct uring_config *run = &uring_srv.cfg;
    struct {
        const char *name;
        int changed;
    } opts[] = {
        {"socket", strcmp(cfg->socket_path, run->socket_path) != 0},
        {"workers", cfg->workers != run->workers},
        {"helpers", cfg->helpers != run->helpers},
        {"max-connections", cfg->max_conns != run->max_conns},
        {"max-connections-per-uid", cfg->max_conns_per_uid != run->max_conns_per_uid},
        {"metrics-listen", strcmp(cfg->metrics_listen, run->metrics_listen) != 0},
    };
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        if (opts[i].changed && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n > 0 ? "," : "", opts[i].name);
}

static void main_reload(int argc, char **argv)
{
    struct uring_config cfg;
    struct uring_runtime *rt = NULL;
    char err[1024], restart[160];
    int r = uring_config_load(&cfg, argc, argv, err, sizeof(err));

    if (r != 0) {
        char q[1100];
        uring_log(URING_LOG_ERROR, "reload_failed", "err=%s detail=%s keeping=running_config",
                  coffer_errname(r < 0 ? r : COFFER_ERR_CONFIG),
                  uring_log_quote(err, q, sizeof(q)));
        return;
    }
    if ((r = uring_runtime_build(&cfg, &rt, err, sizeof(err))) != 0) {
        char q[1100];
        uring_log(URING_LOG_ERROR, "reload_failed",
                  "err=%s namespace=%s secret=%s detail=%s keeping=running_config",
                  coffer_errname(r), cfg.ns, cfg.secret, uring_log_quote(err, q, sizeof(q)));
        return;
    }
    main_restart_only(&cfg, restart, sizeof(restart));
    if (restart[0] != '\0')
        uring_log(URING_LOG_WARN, "reload_partial",
                  "changed=%s detail=\"these options change only on restart: restart cofferd "
                  "(systemctl restart cofferd) to apply them; the running values stay\"",
                  restart);
    /* what ring threads read at run time: _Atomic in struct uring_config, one store each */
    atomic_store(&uring_srv.cfg.io_timeout, atomic_load(&cfg.io_timeout));
    atomic_store(&uring_srv.cfg.frame_timeout, atomic_load(&cfg.frame_timeout));
    atomic_store(&uring_srv.cfg.shutdown_grace, atomic_load(&cfg.shutdown_grace));
    atomic_store(&uring_srv.cfg.offload_min, atomic_load(&cfg.offload_min));
    atomic_store(&uring_srv.cfg.split_min, atomic_load(&cfg.split_min));
    atomic_store(&uring_srv.cfg.fd_piece, atomic_load(&cfg.fd_piece)); /* jobs started from now */
    uring_log_set_level(cfg.log_level);
    uring_runtime_publish(rt); /* rt stays alive: only this thread replaces it */
    uring_keys_flush();
    uring_keys_seed(rt);
    uring_log_set_format(cfg.log_format);
    uring_log(URING_LOG_INFO, "reload_ok",
              "encryption=%s format=%s namespace=%s secret=%s key_id=%s io_timeout_s=%d "
              "frame_timeout_s=%d shutdown_grace_s=%d offload_min=%ld split_min=%ld fd_piece=%ld",
              rt->encryption ? "on" : "off", engine_format_name(rt->format), rt->ns, rt->secret,
              rt->key != NULL ? rt->key->id : "-", atomic_load(&uring_srv.cfg.io_timeout),
              atomic_load(&uring_srv.cfg.frame_timeout), atomic_load(&uring_srv.cfg.shutdown_grace),
              atomic_load(&uring_srv.cfg.offload_min), atomic_load(&uring_srv.cfg.split_min),
              atomic_load(&uring_srv.cfg.fd_piece));
}

static void main_abort(int nworkers, const char *why)
{
    uring_log(URING_LOG_WARN, "shutdown_abort", "reason=%s detail=\"failing running jobs\"", why);
    uring_srv.abort_at = uring_now();
    atomic_store(&uring_srv.aborting, 1);
    for (int i = 0; i < nworkers; i++)
        uring_worker_wake(uring_worker_at(i));
}

/*
 * SIGTERM: stop accepting jobs and wait for the running ones; when --shutdown-grace runs out
 * (or a second SIGTERM/SIGINT comes), they fail with SHUTDOWN and the workers end.
 */
static void main_stop(const sigset_t *set, int nworkers)
{
    double deadline = uring_now() + uring_srv.cfg.shutdown_grace;
    struct timespec poll_ts = {0, 100 * 1000 * 1000};

    atomic_store(&uring_srv.stopping, 1);
    for (int i = 0; i < nworkers; i++)
        uring_worker_wake(uring_worker_at(i));
    while (atomic_load(&uring_srv.workers_running) > 0) {
        int sig = sigtimedwait(set, NULL, &poll_ts);
        if (atomic_load(&uring_srv.aborting))
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            main_abort(nworkers, "second_signal");
        else if (uring_now() >= deadline)
            main_abort(nworkers, "grace_expired");
    }
}

int main(int argc, char **argv)
{
    struct uring_runtime *rt = NULL;
    char err[1024], listen_path[256];
    sigset_t set;
    int r, sig, exit_code = 1, nstarted = 0;

    /*
     * Block the signals main waits for before any thread exists: every thread inherits the mask,
     * so none of them (HSM threads started while the keys load, p11-kit's or the module's own)
     * can take a SIGTERM's default action and kill the daemon mid-job.
     */
    int threads_at_start = main_threads(); /* before ours: the sanitizers' own, if any */

    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    main_harden();
    umask(077);
    r = uring_config_load(&uring_srv.cfg, argc, argv, err, sizeof(err));
    if (r == 1)
        return 0;
    if (r != 0) {
        fprintf(stderr, "cofferd: %s\n", err);
        return 2;
    }
    if (uring_srv.cfg.check_config) {
        int f = uring_srv.cfg.config_path[0] != '\0';
        printf("cofferd: configuration OK%s%s%s\n", f ? " (command line and " : "",
               uring_srv.cfg.config_path, f ? ")" : "");
        return 0;
    }
    uring_log_set_level(uring_srv.cfg.log_level);
    if (kube_global_init() != 0) { /* libcurl: before any thread */
        fprintf(stderr, "cofferd: cannot initialise libcurl\n");
        return 1;
    }
    uring_log_set_format(uring_srv.cfg.log_format);
    uring_srv.listen_fd = -1;
    uring_srv.started = uring_now();
    if (uring_srv.cfg.dev) {
        uring_log(URING_LOG_WARN, "dev_mode",
                  "detail=\"development mode: key and socket under ./.coffer-dev\"");
        if (mkdir_p("./.coffer-dev", 0700) != 0 || main_dev_key(&uring_srv.cfg) != 0)
            return 1;
    }
    if (uring_srv.cfg.echo)
        uring_log(URING_LOG_WARN, "echo_baseline",
                  "detail=\"benchmark baseline: jobs copy bytes, NOTHING IS ENCRYPTED\"");
    if ((r = uring_runtime_build(&uring_srv.cfg, &rt, err, sizeof(err))) != 0) {
        main_no_key(r, err, &uring_srv.cfg);
        return 1;
    }
    uring_runtime_publish(rt);
    uring_keys_seed(rt);

    if ((r = uring_systemd_listen_fd(listen_path, sizeof(listen_path))) >= 0) {
        uring_srv.listen_fd = r;
        main_socket_activated = 1;
    } else if (r != -1) {
        uring_log(URING_LOG_ERROR, "start_failed", "err=%s detail=\"%s\"", coffer_errname(r),
                  listen_path);
        goto out;
    } else if (main_socket_dir(uring_srv.cfg.socket_path) == 0 &&
               (uring_srv.listen_fd = uring_listen_unix(uring_srv.cfg.socket_path, 1024)) >= 0) {
        snprintf(listen_path, sizeof(listen_path), "%s", uring_srv.cfg.socket_path);
    } else {
        uring_log(URING_LOG_ERROR, "start_failed", "socket=%s errno=%d detail=\"%s\"",
                  uring_srv.cfg.socket_path, errno, strerror(errno));
        goto out;
    }
    if (uring_keys_start() != 0 ||
        uring_offload_start(URING_POOL_CIPHER, uring_srv.cfg.helpers) != 0 ||
        uring_offload_start(URING_POOL_FILE, uring_srv.cfg.helpers) != 0 || uring_hsm_start() != 0)
        goto out;
    if (uring_workers_alloc(uring_srv.cfg.workers) != 0)
        goto out;
    uring_srv.nworkers = uring_srv.cfg.workers; /* before any worker reads it (HEALTH) */
    for (; nstarted < uring_srv.cfg.workers; nstarted++)
        if (uring_worker_start(uring_worker_at(nstarted), nstarted) != 0)
            goto out;
    /* metrics: libmicrohttpd's own thread reads the counters; no ring thread waits for it */
    if (uring_srv.cfg.metrics_listen[0] != '\0' &&
        uring_metrics_listen_start(uring_srv.cfg.metrics_listen, err, sizeof(err)) != 0) {
        char q[1100];
        uring_log(URING_LOG_ERROR, "start_failed", "detail=%s", uring_log_quote(err, q, sizeof(q)));
        goto out;
    }
    rt = uring_runtime_get();
    uring_log(URING_LOG_INFO, "started",
              "pid=%d socket=%s socket_activated=%s workers=%d helpers=%d max_connections=%d "
              "encryption=%s format=%s namespace=%s secret=%s key_id=%s",
              (int)getpid(), listen_path, main_socket_activated ? "yes" : "no", nstarted,
              uring_srv.cfg.helpers, uring_srv.cfg.max_conns, rt->encryption ? "on" : "off",
              engine_format_name(rt->format), rt->ns, rt->secret,
              rt->key != NULL ? rt->key->id : "-");
    uring_runtime_put(rt);
    if (uring_srv.cfg.dev)
        main_dev_banner(listen_path);
    uring_systemd_notify("READY=1", "serving");
    for (;;) {
        struct timespec tick = {2, 0};
        if ((sig = sigtimedwait(&set, NULL, &tick)) < 0) {
            if (errno == EAGAIN)
                main_idle_trim();
            continue;
        }
        if (sig == SIGHUP) {
            uring_log(URING_LOG_INFO, "reload", "signal=SIGHUP");
            uring_keys_flush(); /* drops cached Secret keys even when the reload fails */
            uring_systemd_notify("RELOADING=1", "reloading the config file and keys");
            main_reload(argc, argv);
            uring_systemd_notify("READY=1", "serving");
            continue;
        }
        uring_log(URING_LOG_INFO, "stopping",
                  "signal=%s grace_s=%d detail=\"finishing running jobs\"",
                  sig == SIGTERM ? "SIGTERM" : "SIGINT", uring_srv.cfg.shutdown_grace);
        break;
    }
    uring_systemd_notify("STOPPING=1", "finishing running jobs");
    main_stop(&set, nstarted);
    exit_code = 0;
out:
    atomic_store(&uring_srv.stopping, 1);
    for (int i = 0; i < nstarted; i++)
        uring_worker_wake(uring_worker_at(i));
    for (int i = 0; i < nstarted; i++)
        uring_worker_join(uring_worker_at(i));
    uring_metrics_listen_stop(); /* reads the runtime and the HSM: before they go */
    uring_offload_stop(URING_OFFLOAD_STOP_WAIT_MS); /* every pool; a stuck loader is left behind */
    uring_hsm_stop();
    uring_keys_stop();
    for (int i = 0; i < nstarted; i++)
        uring_worker_free(uring_worker_at(i));
    uring_workers_release();
    if (uring_srv.listen_fd >= 0) {
        close(uring_srv.listen_fd);
        if (!main_socket_activated)
            unlink(uring_srv.cfg.socket_path);
    }
    uring_peers_free(); /* issue 10: --max-connections-per-uid's table */
    uring_runtime_publish(NULL);
    uring_log(URING_LOG_INFO, "stopped", "exit=%d", exit_code);
    uring_hsm_exit(exit_code); /* _exit when a thread is stuck in a PKCS#11 call (issue 9) */
    /*
     * A thread still running now is one hsm_client_close left behind, stuck in a PKCS#11 call.
     * Returning from main would run the exit handlers, which tear OpenSSL and p11-kit down under
     * it (a SEGV under ThreadSanitizer): leave without them. Every other thread has been joined.
     */
    if (threads_at_start > 0 && main_threads() > threads_at_start) {
        fflush(stdout);
        _exit(exit_code);
    }
    return exit_code;
}
