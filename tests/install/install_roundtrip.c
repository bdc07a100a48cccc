/* SPDX-License-Identifier: Apache-2.0 */
/* A libcoffer user built against an installed coffer: round-trips a file through cofferd. */
#include <coffer_client.h>
#include <coffer_error.h>
#include <coffer_version.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * usage: install_roundtrip SOCKET IN ENCRYPTED DECRYPTED
 * Encrypts IN into ENCRYPTED as a descriptor job and decrypts ENCRYPTED into DECRYPTED through
 * the socket (a stream job); prints the versions the library, its header and the daemon report.
 */
static int job(coffer_client *c, int op, const char *in, const char *out, int by_fd)
{
    struct coffer_job j = {.op = op};
    struct coffer_result res = {0};
    int ifd = open(in, O_RDONLY | O_CLOEXEC);
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = ifd < 0 || ofd < 0 ? COFFER_ERR_IO : 0;

    if (r == 0)
        r = by_fd ? coffer_client_file(c, &j, ifd, ofd, &res)
                  : coffer_client_stream_fd(c, &j, ifd, ofd, &res);
    if (r != 0)
        fprintf(stderr, "install_roundtrip: %s %s: %s: %s\n",
                op == COFFER_CLIENT_ENCRYPT ? "encrypt" : "decrypt", in, coffer_client_strerror(r),
                res.message);
    else
        printf("%s: %llu bytes in, %llu out, metadata %s\n",
               op == COFFER_CLIENT_ENCRYPT ? "encrypt" : "decrypt",
               (unsigned long long)res.bytes_in, (unsigned long long)res.bytes_out, res.metadata);
    coffer_result_clear(&res);
    if (ifd >= 0)
        close(ifd);
    if (ofd >= 0)
        close(ofd);
    return r;
}

int main(int argc, char **argv)
{
    coffer_client *c = NULL;
    char msg[512], *health = NULL;
    int r;

    if (argc != 5) {
        fprintf(stderr, "usage: install_roundtrip SOCKET IN ENCRYPTED DECRYPTED\n");
        return 2;
    }
    printf("library %s header %s\n", coffer_client_version(), COFFER_VERSION_STRING);
    if ((r = coffer_client_connect(&c, argv[1], msg, sizeof(msg))) != 0 ||
        (r = coffer_client_health(c, &health)) != 0) {
        fprintf(stderr, "install_roundtrip: %s: %s %s\n", argv[1], coffer_client_strerror(r), msg);
        coffer_client_close(c);
        return 1;
    }
    printf("health %s\n", health);
    free(health);
    coffer_client_close(c);
    /* one connection per request, as the coffer CLI does */
    if ((r = coffer_client_connect(&c, argv[1], msg, sizeof(msg))) == 0)
        r = job(c, COFFER_CLIENT_ENCRYPT, argv[2], argv[3], 1);
    coffer_client_close(c);
    c = NULL;
    if (r == 0 && (r = coffer_client_connect(&c, argv[1], msg, sizeof(msg))) == 0)
        r = job(c, COFFER_CLIENT_DECRYPT, argv[3], argv[4], 0);
    coffer_client_close(c);
    return r == 0 ? 0 : 1;
}
