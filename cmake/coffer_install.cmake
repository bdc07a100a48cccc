# SPDX-License-Identifier: Apache-2.0
# `cmake --install build [--prefix P]`: programs, libcoffer (shared, static, headers, pkg-config,
# CMake package), the OpenSSL provider, systemd units, man pages and docs, relocatable to any P.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The provider goes where OpenSSL 3 looks for modules when the prefix is /usr (Debian:
# /usr/lib/<multiarch>/ossl-modules); elsewhere run OpenSSL with OPENSSL_MODULES=P/<libdir>/ossl-modules.
set(COFFER_OPENSSL_MODULESDIR "${CMAKE_INSTALL_LIBDIR}/ossl-modules" CACHE STRING
    "Where to install coffer.so, relative to the prefix (or absolute)")
set(COFFER_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where to install the systemd units, relative to the prefix (or absolute)")

install(TARGETS coffer RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS cofferd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS libcoffer_shared LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Unspecified)
install(TARGETS libcoffer_archive ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/client/coffer_client.h ${PROJECT_SOURCE_DIR}/engine/coffer_error.h
              ${PROJECT_BINARY_DIR}/include/coffer_version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS coffer_provider LIBRARY DESTINATION ${COFFER_OPENSSL_MODULESDIR})

# libcoffer.pc: prefix = ${pcfiledir}/.. (as many as the libdir is deep), so it follows --prefix.
file(RELATIVE_PATH COFFER_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" COFFER_PC_TO_PREFIX "${COFFER_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/client/libcoffer.pc.in ${PROJECT_BINARY_DIR}/libcoffer.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/libcoffer.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

configure_package_config_file(${PROJECT_SOURCE_DIR}/client/cofferConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cofferConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coffer
  PATH_VARS CMAKE_INSTALL_LIBDIR CMAKE_INSTALL_INCLUDEDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cofferConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cofferConfig.cmake ${PROJECT_BINARY_DIR}/cofferConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coffer)

# systemd: the units name /usr/sbin/cofferd; installed, they name the installed program.
install(CODE "
  set(_unitdir \"${COFFER_SYSTEMD_UNITDIR}\")
  if(NOT IS_ABSOLUTE \"\${_unitdir}\")
    set(_unitdir \"\${CMAKE_INSTALL_PREFIX}/\${_unitdir}\")
  endif()
  set(_sbindir \"${CMAKE_INSTALL_SBINDIR}\")
  if(NOT IS_ABSOLUTE \"\${_sbindir}\")
    set(_sbindir \"\${CMAKE_INSTALL_PREFIX}/\${_sbindir}\")
  endif()
  foreach(_unit cofferd.service cofferd.socket)
    file(READ \"${PROJECT_SOURCE_DIR}/deploy/systemd/\${_unit}\" _text)
    string(REPLACE \"/usr/sbin/cofferd\" \"\${_sbindir}/cofferd\" _text \"\${_text}\")
    message(STATUS \"Installing: \$ENV{DESTDIR}\${_unitdir}/\${_unit}\")
    file(WRITE \"\$ENV{DESTDIR}\${_unitdir}/\${_unit}\" \"\${_text}\")
  endforeach()
")
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/coffer.sysusers
        DESTINATION lib/sysusers.d RENAME coffer.conf)

# Man pages: scdoc sources in docs/man, built into build/man.
find_program(SCDOC scdoc)
if(SCDOC)
  set(_man_outputs)
  foreach(_page cofferd.8 coffer.1 coffer.conf.5)
    set(_src ${PROJECT_SOURCE_DIR}/docs/man/${_page}.scd)
    if(EXISTS ${_src})
      string(REGEX MATCH "[0-9]$" _section ${_page})
      add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/man/${_page}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
        COMMAND ${SCDOC} < ${_src} > ${PROJECT_BINARY_DIR}/man/${_page}
        DEPENDS ${_src} VERBATIM)
      list(APPEND _man_outputs ${PROJECT_BINARY_DIR}/man/${_page})
      install(FILES ${PROJECT_BINARY_DIR}/man/${_page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_section})
    endif()
  endforeach()
  add_custom_target(coffer_man ALL DEPENDS ${_man_outputs})
else()
  message(WARNING "scdoc not found: man pages are not built (apt-get install scdoc)")
endif()

# Docs, the example config and the Kubernetes manifests.
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}
        FILES_MATCHING PATTERN "*.md" PATTERN "man" EXCLUDE)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/cofferd.conf DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/deploy/kubernetes DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
