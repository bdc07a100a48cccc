# SPDX-License-Identifier: Apache-2.0
# libcoffer: the C client of cofferd, static (libcoffer.a) and shared (libcoffer.so), in build/lib.
# It needs only the protocol codec and the error table: no crypto, no ipsec-mb.
add_library(libcoffer STATIC coffer_client.c)
set_target_properties(libcoffer PROPERTIES OUTPUT_NAME coffer)
target_include_directories(libcoffer PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(libcoffer PUBLIC coffer_proto coffer_error)

add_library(libcoffer_shared SHARED coffer_client.c)
set_target_properties(libcoffer_shared PROPERTIES OUTPUT_NAME coffer VERSION ${PROJECT_VERSION}
                                                  SOVERSION 0)
target_include_directories(libcoffer_shared PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(libcoffer_shared PRIVATE coffer_proto coffer_error)
# the shared library exports the coffer_client_* API and nothing else
target_link_options(libcoffer_shared PRIVATE
                    -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/libcoffer.map)

# The installed static archive is self-contained: the client, the frame codec and the error table
# (in-tree programs link libcoffer with coffer_proto and coffer_error instead).
add_library(libcoffer_archive STATIC coffer_client.c $<TARGET_OBJECTS:coffer_proto>
                                     $<TARGET_OBJECTS:coffer_error>)
set_target_properties(libcoffer_archive PROPERTIES OUTPUT_NAME coffer
                      ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib/install)
target_include_directories(libcoffer_archive PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(libcoffer_archive PRIVATE coffer_proto coffer_error)
