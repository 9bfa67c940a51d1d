#!/usr/bin/env bash
# The installed tree works as installed: `cmake --install --prefix /usr` (into a DESTDIR)
# puts the config in /etc/nsbroker, the man pages carry project(VERSION), jailme is setuid,
# and the shipped config passes the installed nsbrokerd's --check-config once the group and
# the run_as user of sysusers.d/nsbroker.conf exist (and fails before).
#   install_test.sh BUILD_DIR VERSION
source "$(dirname "$0")/lib.sh"
build=$1 version=$2
root=$tmp/root
DESTDIR=$root cmake --install "$build" --prefix /usr >/dev/null

[ -f "$root/etc/nsbroker/nsbroker.conf" ] || fail "no /etc/nsbroker/nsbroker.conf"
[ ! -e "$root/usr/etc" ] || fail "something went to /usr/etc"
for f in usr/sbin/nsbrokerd usr/libexec/nsbroker/nsbroker-opener usr/bin/nsjoin usr/bin/jailme \
         usr/lib/libnsjoin.so.0 \
         usr/lib/systemd/system/nsbroker.service usr/lib/systemd/system/nsbroker.socket \
         usr/lib/sysusers.d/nsbroker.conf usr/lib/tmpfiles.d/nsbroker.conf \
         usr/share/bash-completion/completions/nsjoin usr/share/zsh/vendor-completions/_nsjoin \
         usr/lib/pkgconfig/nsjoin.pc usr/lib/cmake/nsbroker/nsbrokerConfig.cmake; do
  [ -e "$root/$f" ] || fail "not installed: /$f"
done
expect_eq "$(stat -c '%a %U' "$root/usr/bin/jailme")" "4755 root" "jailme's mode"
# nsbrokerd execs it as root from ../libexec/nsbroker, and refuses it unless it is root's and
# writable by no one else (broker/privsep.h).
expect_eq "$(stat -c '%a %U' "$root/usr/libexec/nsbroker/nsbroker-opener")" "755 root" \
  "nsbroker-opener's mode"
for page in usr/share/man/man8/nsbrokerd.8.gz usr/share/man/man1/nsjoin.1.gz \
            usr/share/man/man1/jailme.1.gz; do
  # awk reads the whole page: `grep -m1` would exit at the .TH line, and under pipefail the
  # SIGPIPE zcat then gets on a page over its 32 KiB buffer (nsbrokerd.8) would fail the test.
  th=$(zcat "$root/$page" | awk '/^\.TH/ && !seen { print; seen = 1 }')
  [[ $th == *"\"nsbroker $version\""* ]] || fail "$page: $th (want nsbroker $version)"
done

# The group and the run_as user come from the installed sysusers.d file, into copies of
# /etc/group and /etc/passwd that a private mount namespace sees in place of the real ones:
# the machine's users and groups stay as they are.
conf=$root/etc/nsbroker/nsbroker.conf
check() {
  unshare -m bash -c 'mount --bind "$1" /etc/group && mount --bind "$2" /etc/passwd &&
                      exec "$3" -c "$4" --check-config' \
    _ "$1" "$2" "$root/usr/sbin/nsbrokerd" "$conf"
}
grep -v '^nsbroker:' /etc/group >"$tmp/group.without"
grep -v '^nsbroker:' /etc/passwd >"$tmp/passwd.without"
if out=$(check "$tmp/group.without" "$tmp/passwd.without" 2>&1); then
  fail "valid without the nsbroker user and group: $out"
fi
[[ $out == *"unknown user 'nsbroker'"* || $out == *"unknown group 'nsbroker'"* ]] ||
  fail "unexpected error: $out"
mkdir -p "$tmp/sysroot/etc"
cp "$tmp/group.without" "$tmp/sysroot/etc/group"
cp "$tmp/passwd.without" "$tmp/sysroot/etc/passwd"
systemd-sysusers --root="$tmp/sysroot" "$root/usr/lib/sysusers.d/nsbroker.conf"
grep -q '^nsbroker:' "$tmp/sysroot/etc/group" || fail "sysusers.d made no nsbroker group"
grep -q '^nsbroker:' "$tmp/sysroot/etc/passwd" || fail "sysusers.d made no nsbroker user"
out=$(check "$tmp/sysroot/etc/group" "$tmp/sysroot/etc/passwd" 2>&1) ||
  fail "shipped config: $out"
expect_eq "$out" "$conf: OK, 1 targets" "--check-config"
echo "install layout: OK"
