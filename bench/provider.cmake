# SPDX-License-Identifier: Apache-2.0
# bench_provider: the coffer OpenSSL provider against the default provider through EVP.
add_executable(bench_provider ${CMAKE_CURRENT_LIST_DIR}/bench_provider.c)
target_link_libraries(bench_provider PRIVATE coffer_benchsupport OpenSSL::Crypto)
target_compile_definitions(bench_provider PRIVATE
                           COFFER_LIB_DIR="${CMAKE_LIBRARY_OUTPUT_DIRECTORY}")
if(TARGET coffer_provider)
  add_dependencies(bench_provider coffer_provider)
endif()
