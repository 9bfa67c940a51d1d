# Shared by scripts/*: dependency installation and the CMake build. Sourced, not run.

die() { echo "${0##*/}: $*" >&2; exit 1; }

# Every package the build, the tests, the demo and the benchmarks use. The packaging tests
# (tests/packaging, scripts/test-deb) need systemd's sysusers/tmpfiles, the completion
# frameworks, dpkg-dev (cpack's dpkg-shlibdeps), python3-yaml (manifest checks) and
# inotify-tools (the container entrypoint).
NSB_PACKAGES=(build-essential cmake pkg-config libevent-dev libprotobuf-dev protobuf-compiler
              libgtest-dev iproute2 util-linux procps uwsgi-core libsystemd-dev systemd
              bash-completion zsh dpkg-dev python3-yaml inotify-tools runc crun busybox-static)

nsb_install_deps() {
  local missing=()
  for p in "${NSB_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

# nsb_build DIR BUILD_TYPE [CMAKE ARGS...]
nsb_build() {
  local dir=$1 type=$2
  shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}
