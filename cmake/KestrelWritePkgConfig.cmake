# Install-time helper (included from the install(CODE) in the top-level CMakeLists.txt): writes
# <template>.pc for the prefix actually being installed to (`cmake --install --prefix P` overrides
# the configure-time CMAKE_INSTALL_PREFIX) and installs it into <libdir>/pkgconfig. file(INSTALL)
# honours DESTDIR and records the file in install_manifest.txt.
# Inputs: _kestrel_pc_template, _kestrel_pc_libdir, _kestrel_pc_includedir, _kestrel_pc_version,
# _kestrel_pc_work (a scratch folder in the build tree), CMAKE_INSTALL_PREFIX.
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
# One scratch file per prefix, so two installs from the same build tree cannot mix them up.
string(MD5 _kestrel_pc_key "${CMAKE_INSTALL_PREFIX}")
# The .pc file takes the template's name without ".in" (kestrel.pc, kestrel-plugin-sdk.pc).
get_filename_component(_kestrel_pc_name "${_kestrel_pc_template}" NAME)
string(REGEX REPLACE "\\.in$" "" _kestrel_pc_name "${_kestrel_pc_name}")
set(_kestrel_pc_file "${_kestrel_pc_work}/${_kestrel_pc_key}/${_kestrel_pc_name}")
configure_file("${_kestrel_pc_template}" "${_kestrel_pc_file}" @ONLY)
file(INSTALL DESTINATION "${_kestrel_pc_destination}" TYPE FILE FILES "${_kestrel_pc_file}")
