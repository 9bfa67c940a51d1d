#!/bin/sh
# PID 1 of the nsbroker container image: runs nsbrokerd and reloads it (SIGHUP) whenever the
# config directory changes, e.g. when the kubelet swaps a ConfigMap volume's ..data link. A
# bad new config changes nothing: the broker logs why and keeps the old one serving.
#   NSB_CONFIG_DIR   the directory holding nsbroker.conf (default /etc/nsbroker)
set -eu
dir=${NSB_CONFIG_DIR:-/etc/nsbroker}
started=$(cksum <"$dir/nsbroker.conf" 2>/dev/null || true)
nsbrokerd -c "$dir/nsbroker.conf" &
broker=$!
stopping=0
trap 'stopping=1; kill -TERM "$broker" 2>/dev/null || true' TERM INT
# inotifywait -m blocks until the directory changes (no polling) and keeps its one watch for
# good, so no change falls between two watches. A change made before the watch was
# established is caught by comparing the file with what the broker started on. The watcher is
# a session (and process group) of its own, so that one signal to the group stops the loop and
# inotifywait alike: a trap in the loop raced with its own `&` and `wait` (dash missed a TERM
# there, and the entrypoint then waited forever).
setsid sh -c 'inotifywait -m -e create -e moved_to -e close_write "$1" 2>&1 |
  while read -r line; do
    case $line in
      "Setting up watches."*) ;;
      "Watches established."*)
        echo "entrypoint: watching $1 for changes" >&2
        [ "$(cksum <"$1/nsbroker.conf" 2>/dev/null || true)" = "$3" ] ||
          kill -HUP "$2" 2>/dev/null || exit 0 ;;
      *) kill -HUP "$2" 2>/dev/null || exit 0 ;;
    esac
  done' watcher "$dir" "$broker" "$started" &
watcher=$!
status=0
wait "$broker" || status=$?
# A trapped signal ends that `wait` early: the second one has the broker's own exit status.
if [ "$stopping" = 1 ]; then
  status=0
  wait "$broker" || status=$?
fi
# The watcher first, then its group: a watcher that had not yet made its session dies of the
# first signal before it can start an inotifywait; one that had, leaves it in the group. It is
# our unreaped child, so neither number can be another process's.
kill -s TERM "$watcher" 2>/dev/null || true
kill -s TERM -- "-$watcher" 2>/dev/null || true
wait "$watcher" || true
exit "$status"
