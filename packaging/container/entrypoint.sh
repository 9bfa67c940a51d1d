#!/bin/sh
# PID 1 of the nsbroker container image: runs nsbrokerd and reloads it (SIGHUP) whenever the
# config directory changes, e.g. when the kubelet swaps a ConfigMap volume's ..data link. A
# bad new config changes nothing: the broker logs why and keeps the old one serving.
#   NSB_CONFIG_DIR   the directory holding nsbroker.conf (default /etc/nsbroker)
set -eu
dir=${NSB_CONFIG_DIR:-/etc/nsbroker}
nsbrokerd -c "$dir/nsbroker.conf" &
broker=$!
stopping=0
trap 'stopping=1; kill -TERM "$broker" 2>/dev/null || true' TERM INT
# inotifywait blocks until the directory changes: no polling. Stopping the watcher stops the
# inotifywait it is waiting for, too.
(trap 'kill "$inotify" 2>/dev/null; wait "$inotify"; exit 0' TERM
 while :; do
   inotifywait -qq -e create -e moved_to -e close_write "$dir" &
   inotify=$!
   wait "$inotify" || exit 0
   kill -HUP "$broker" 2>/dev/null || exit 0
 done) &
watcher=$!
status=0
wait "$broker" || status=$?
# A trapped signal ends that `wait` early: the second one has the broker's own exit status.
if [ "$stopping" = 1 ]; then
  status=0
  wait "$broker" || status=$?
fi
kill "$watcher" 2>/dev/null && wait "$watcher" || true
exit "$status"
