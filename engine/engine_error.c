/* SPDX-License-Identifier: Apache-2.0 */
/* The messages and names of coffer's error table. */
#include "coffer_error.h"

#include <errno.h>

const char *coffer_strerror(int err)
{
    switch (err) {
    case COFFER_OK:
        return "success";
#define COFFER_ERR_MSG(name, value, msg)                                                           \
    case (value):                                                                                  \
        return (msg);
        COFFER_ERROR_TABLE(COFFER_ERR_MSG)
#undef COFFER_ERR_MSG
    default:
        return "unknown error";
    }
}

const char *coffer_errname(int err)
{
    switch (err) {
    case COFFER_OK:
        return "OK";
#define COFFER_ERR_NAME(name, value, msg)                                                          \
    case (value):                                                                                  \
        return #name;
        COFFER_ERROR_TABLE(COFFER_ERR_NAME)
#undef COFFER_ERR_NAME
    default:
        return "UNKNOWN";
    }
}

int coffer_err_from_errno(int errnum)
{
    switch (errnum) {
    case ENOMEM:
        return COFFER_ERR_NOMEM;
    case ENOSPC:
    case EDQUOT:
        return COFFER_ERR_NOSPACE;
    case EACCES:
    case EPERM:
        return COFFER_ERR_PERMISSION;
    case EPIPE:
    case ECONNRESET:
        return COFFER_ERR_PEER_GONE;
    default:
        return COFFER_ERR_IO;
    }
}
