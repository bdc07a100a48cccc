/* SPDX-License-Identifier: Apache-2.0 */
/* A stand-in for coffer's main that runs only 'coffer hsm ...', so tests/hsm can test cli_hsm.c. */
#include "cli_hsm.h"

int main(int argc, char **argv)
{
    return cli_hsm_main(argc, argv);
}
