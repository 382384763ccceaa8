# Install-time helper (included from the install(CODE) in the top-level CMakeLists.txt): writes
# <template>.pc for the prefix actually being installed to (`cmake --install --prefix P` overrides
# the configure-time CMAKE_INSTALL_PREFIX) and installs it into <libdir>/pkgconfig. file(INSTALL)
# honours DESTDIR and records the file in install_manifest.txt.
# Inputs: _kestrel_pc_template, _kestrel_pc_libdir, _kestrel_pc_includedir, _kestrel_pc_version,
# _kestrel_pc_work (a scratch folder in the build tree), _kestrel_pc_library (the built
# libkestrel.so), CMAKE_INSTALL_PREFIX.
#
# Libs.private lists the shared libraries libkestrel.so itself needs besides the C/C++ runtime
# (Debian 12: the libabsl_*.so.20220623 of Abseil), read from the library's NEEDED entries, so
# `pkg-config --static --libs kestrel` is complete and a packager sees the run-time dependencies.
# (Abseil cannot be linked statically into the shared library: Debian's libabsl_base.a and
# libabsl_raw_hash_set.a use local-exec TLS, which a shared object cannot hold.) They are not
# Requires.private: that would add Abseil's cflags (-DNOMINMAX) to every consumer's compile.
set(KESTREL_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
if(IS_ABSOLUTE "${_kestrel_pc_libdir}")
  set(KESTREL_PC_LIBDIR "${_kestrel_pc_libdir}")
  set(_kestrel_pc_destination "${_kestrel_pc_libdir}/pkgconfig")
else()
  set(KESTREL_PC_LIBDIR "\${prefix}/${_kestrel_pc_libdir}")
  set(_kestrel_pc_destination "${CMAKE_INSTALL_PREFIX}/${_kestrel_pc_libdir}/pkgconfig")
endif()
if(IS_ABSOLUTE "${_kestrel_pc_includedir}")
  set(KESTREL_PC_INCLUDEDIR "${_kestrel_pc_includedir}")
else()
  set(KESTREL_PC_INCLUDEDIR "\${prefix}/${_kestrel_pc_includedir}")
endif()
set(KESTREL_PC_VERSION "${_kestrel_pc_version}")
set(KESTREL_PC_LIBS_PRIVATE "")
if(EXISTS "${_kestrel_pc_library}")
  file(GET_RUNTIME_DEPENDENCIES LIBRARIES "${_kestrel_pc_library}"
    RESOLVED_DEPENDENCIES_VAR _kestrel_pc_deps UNRESOLVED_DEPENDENCIES_VAR _kestrel_pc_unresolved
    PRE_EXCLUDE_REGEXES "^(libc|libm|libdl|librt|libpthread|libstdc\\+\\+|libgcc_s|ld-linux.*)\\.so.*")
  foreach(_dep IN LISTS _kestrel_pc_deps _kestrel_pc_unresolved)
    get_filename_component(_name "${_dep}" NAME)
    if(_name MATCHES "^lib(.+)\\.so(\\..*)?$")
      string(APPEND KESTREL_PC_LIBS_PRIVATE " -l${CMAKE_MATCH_1}")
    endif()
  endforeach()
  string(STRIP "${KESTREL_PC_LIBS_PRIVATE}" KESTREL_PC_LIBS_PRIVATE)
endif()
# One scratch file per prefix, so two installs from the same build tree cannot mix them up.
string(MD5 _kestrel_pc_key "${CMAKE_INSTALL_PREFIX}")
# The .pc file takes the template's name without ".in" (kestrel.pc, kestrel-plugin-sdk.pc).
get_filename_component(_kestrel_pc_name "${_kestrel_pc_template}" NAME)
string(REGEX REPLACE "\\.in$" "" _kestrel_pc_name "${_kestrel_pc_name}")
set(_kestrel_pc_file "${_kestrel_pc_work}/${_kestrel_pc_key}/${_kestrel_pc_name}")
configure_file("${_kestrel_pc_template}" "${_kestrel_pc_file}" @ONLY)
file(INSTALL DESTINATION "${_kestrel_pc_destination}" TYPE FILE FILES "${_kestrel_pc_file}")
