# SPDX-License-Identifier: Apache-2.0
# bench_daemon: cofferd against its own --echo-baseline (same io_uring code, no crypto) and cp.
add_executable(bench_daemon ${CMAKE_CURRENT_LIST_DIR}/bench_daemon.c)
target_link_libraries(bench_daemon PRIVATE coffer_benchsupport libcoffer Threads::Threads)
target_compile_definitions(bench_daemon PRIVATE COFFER_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
add_dependencies(bench_daemon cofferd)
