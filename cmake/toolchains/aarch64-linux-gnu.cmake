# Cross-compiles Kestrel for 64-bit Arm Linux (aarch64) with Debian's cross toolchain:
#   apt-get install g++-aarch64-linux-gnu libc6-dev-arm64-cross libstdc++-12-dev-arm64-cross
# plus an aarch64 Abseil from Debian multiarch (installs into /usr/lib/aarch64-linux-gnu):
#   dpkg --add-architecture arm64 && apt-get update && apt-get install libabsl-dev:arm64 libpcre2-dev:arm64
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DKESTREL_BUILD_TESTS=OFF
#   qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib \
#       build-aarch64/bin/kestrel generate -m MODEL -p PROMPT
# (LD_LIBRARY_PATH keeps libc from the sysroot, next to its loader: multiarch's arm64 libc in
# /lib/aarch64-linux-gnu would otherwise be picked and hangs in pthread_create.)
#
# Overrides: KESTREL_CROSS_PREFIX (compiler prefix, default "aarch64-linux-gnu-"),
# KESTREL_CROSS_SYSROOT (the C library of the target, default /usr/aarch64-linux-gnu).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
# Debian multiarch triplet: find_package/find_library look in <prefix>/lib/aarch64-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

if(NOT DEFINED KESTREL_CROSS_PREFIX)
  set(KESTREL_CROSS_PREFIX "aarch64-linux-gnu-")
endif()
if(NOT DEFINED KESTREL_CROSS_SYSROOT)
  set(KESTREL_CROSS_SYSROOT "/usr/aarch64-linux-gnu")
endif()
# try_compile projects re-read this file; pass the overrides on to them.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES KESTREL_CROSS_PREFIX KESTREL_CROSS_SYSROOT)

set(CMAKE_C_COMPILER "${KESTREL_CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${KESTREL_CROSS_PREFIX}g++")

# Libraries, headers and CMake packages: the target's sysroot first, then the multiarch folders
# of the host (/usr/lib/aarch64-linux-gnu, where libabsl-dev:arm64 lives). Host x86-64 libraries
# live in /usr/lib/x86_64-linux-gnu, which CMAKE_LIBRARY_ARCHITECTURE keeps out of the search.
# Programs (code generators, tools) always come from the host.
set(CMAKE_FIND_ROOT_PATH "${KESTREL_CROSS_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Lets CMake (and ctest) run target programs: user-mode QEMU with the target's C library.
find_program(KESTREL_QEMU_AARCH64 qemu-aarch64)
if(KESTREL_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR
    "${KESTREL_QEMU_AARCH64};-L;${KESTREL_CROSS_SYSROOT};-E;LD_LIBRARY_PATH=${KESTREL_CROSS_SYSROOT}/lib")
endif()
