# SPDX-License-Identifier: Apache-2.0
# bench_engine: coffer-v1 seal/open against raw ipsec-mb and OpenSSL AES-256-GCM in one process.
add_executable(bench_engine bench_engine.c)
target_link_libraries(bench_engine PRIVATE coffer_engine coffer_benchsupport)
