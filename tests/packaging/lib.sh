# Shared by the packaging tests (sourced): a temp dir removed on exit, checks, a broker.
set -euo pipefail
tmp=$(mktemp -d "/tmp/nsb-${0##*/}-$$.XXXXXX")
broker_pid=
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }

# start_broker NSBROKERD ARGS...: runs it in the background and returns once it logged
# "serving" (its stderr is a fifo read up to that line; later lines are dropped).
start_broker() {
  mkfifo "$tmp/broker.log"
  "$@" 2>"$tmp/broker.log" &
  broker_pid=$!
  grep -q -m1 -E 'serving [0-9]+ targets .*on ' "$tmp/broker.log" || fail "broker did not start: $*"
}
