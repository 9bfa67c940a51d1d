#!/usr/bin/env bash
# Fleet examples, as far as a machine without a cluster or image registry can check them:
# the manifests' syntax and wiring (check_manifests.py), the ConfigMap's config through the
# real nsbrokerd --check-config, and the image's entrypoint run for real: a kubelet-style
# ConfigMap update (the ..data link swapped) makes it reload the broker, SIGTERM stops both.
#   fleet_test.sh BUILD_DIR SOURCE_DIR
source "$(dirname "$0")/lib.sh"
build=$1 src=$2
/usr/bin/python3 "$src/tests/packaging/check_manifests.py" "$src" "$tmp/configmap.conf"
"$build/broker/nsbrokerd" -c "$tmp/configmap.conf" --check-config >/dev/null ||
  fail "the ConfigMap's nsbroker.conf"
sh -n "$src/packaging/container/entrypoint.sh"

# A ConfigMap volume as the kubelet lays it out: nsbroker.conf -> ..data/nsbroker.conf,
# ..data -> ..<timestamp>; an update writes a new timestamp folder and renames ..data.
conf=$tmp/etc
publish() {  # publish NAME CONFIG
  mkdir -p "$conf/..$1"
  printf '%s\n' "$2" >"$conf/..$1/nsbroker.conf"
  ln -s "..$1" "$conf/..data_tmp"
  mv -T "$conf/..data_tmp" "$conf/..data"
}
mkdir -p "$conf"
publish v1 "socket: \"$tmp/nsb.sock\" target { name: \"self\" self: true }"
ln -s ..data/nsbroker.conf "$conf/nsbroker.conf"
: >"$tmp/log"
NSB_CONFIG_DIR=$conf PATH="$build/broker:$PATH" \
  setsid "$src/packaging/container/entrypoint.sh" >/dev/null 2>"$tmp/log" &
entry=$!
wait_log() {  # tail -f follows the log by inotify; no sleeping
  grep -q -m1 "$1" < <(timeout 10 tail -n +1 -f "$tmp/log") || fail "no '$1' in: $(cat "$tmp/log")"
}
wait_log "serving 1 targets"
wait_log "watching $conf for changes"
publish v2 "socket: \"$tmp/nsb.sock\" target { name: \"self\" self: true }
target { name: \"again\" self: true }"
wait_log "reloaded .*: 2 targets"
# The watcher is a session of its own: its inotifywait must go too, waited for on a pidfd.
inotify=$(pgrep -f "^inotifywait -m .* $conf\$") || fail "no inotifywait watching $conf"
kill -TERM "$entry"
status=0
wait "$entry" || status=$?
expect_eq "$status" 0 "the entrypoint's exit status"
grep -q "nsbrokerd: stopped" "$tmp/log" || fail "the broker did not stop cleanly: $(cat "$tmp/log")"
# Nothing of the entrypoint's session is left (the watcher and its inotifywait included).
left=$(pgrep -s "$entry" || true)
[ -z "$left" ] || { ps -o pid,stat,args -p "$(echo $left | tr " " ,)"; fail "left running in the entrypoint's session"; }
/usr/bin/python3 -c 'import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    sys.exit(0)
sys.exit(0 if select.select([fd], [], [], 10)[0] else 1)' "$inotify" ||
  { kill "$inotify"; fail "the watcher's inotifywait $inotify is still running"; }
echo "fleet: OK"
