# SPDX-License-Identifier: Apache-2.0
# bench_hsm: 4 KiB jobs through cofferd with the pkcs11 retriever (cache off, on) beside the Secret's.
if(TARGET coffer_hsm AND TARGET cofferd)
  add_executable(bench_hsm ${CMAKE_CURRENT_LIST_DIR}/bench_hsm.c)
  target_link_libraries(bench_hsm PRIVATE coffer_benchsupport libcoffer coffer_hsm Threads::Threads)
  target_compile_definitions(bench_hsm PRIVATE COFFER_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  add_dependencies(bench_hsm cofferd)
endif()
