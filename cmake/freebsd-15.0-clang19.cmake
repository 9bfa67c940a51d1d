# CMake toolchain: nsbroker for FreeBSD 15.0 amd64, cross-compiled with Debian's clang-19 and
# FreeBSD's own libc++ headers from a header-only sysroot. Compile checks only: the sysroot has
# no libraries or start files, so nothing links (scripts/check-freebsd builds objects).
#
#   cmake -S . -B build-freebsd --toolchain cmake/freebsd-15.0-clang19.cmake \
#         -DNSB_FREEBSD_SYSROOT=/path/to/freebsd-15.0-sysroot ...
set(CMAKE_SYSTEM_NAME FreeBSD)
set(CMAKE_SYSTEM_VERSION 15.0)
set(CMAKE_SYSTEM_PROCESSOR amd64)  # uname -m there

# Next to the repository by default, where CI mounts it (read-only: nothing is written there).
if(NOT NSB_FREEBSD_SYSROOT)
  set(NSB_FREEBSD_SYSROOT "${CMAKE_CURRENT_LIST_DIR}/../../shared/freebsd-15.0-sysroot")
endif()
if(NOT EXISTS "${NSB_FREEBSD_SYSROOT}/usr/include/sys/jail.h")
  message(FATAL_ERROR "no FreeBSD 15.0 sysroot at ${NSB_FREEBSD_SYSROOT} (set NSB_FREEBSD_SYSROOT)")
endif()
# try_compile projects run this file again: hand them the same sysroot.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES NSB_FREEBSD_SYSROOT)

set(CMAKE_SYSROOT "${NSB_FREEBSD_SYSROOT}")
set(CMAKE_CXX_COMPILER clang++-19)
set(CMAKE_CXX_COMPILER_TARGET x86_64-unknown-freebsd15.0)
# FreeBSD's C++ library is libc++ (the sysroot's usr/include/c++/v1), never the host's libstdc++.
set(CMAKE_CXX_FLAGS_INIT "-stdlib=libc++")
# No FreeBSD crt1.o or libc here: CMake's compiler checks must not try to link.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

# Headers and libraries come from the sysroot (or from paths given explicitly); host programs
# such as protoc from the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
