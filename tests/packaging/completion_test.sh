#!/usr/bin/env bash
# Shell completion against a real broker: `nsjoin -t <TAB>` offers the targets the caller may
# join (root: both; uid 65534: only its own), options complete, and the zsh files parse.
#   completion_test.sh BUILD_DIR SOURCE_DIR
source "$(dirname "$0")/lib.sh"
build=$1 src=$2
chmod 755 "$tmp"
cat >"$tmp/broker.conf" <<CONF
socket: "$tmp/broker.sock"
socket_mode: "0666"
target { name: "mine" self: true }
target { name: "theirs" self: true allow { uid: 65534 } }
CONF
start_broker "$build/broker/nsbrokerd" -c "$tmp/broker.conf"

# complete USER WORDS...: what bash completion offers for the last (partial) word.
complete_as() {
  local user=$1
  shift
  setpriv --reuid="$user" --regid="$user" --clear-groups env PATH="$build/joiner:$PATH" \
    bash -c 'source /usr/share/bash-completion/bash_completion
             source "$1/packaging/completion/$2.bash"
             shift
             COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
             "_${COMP_WORDS[0]}"
             printf "%s\n" "${COMPREPLY[@]}" | sort | xargs' _ "$src" "$@"
}
expect_eq "$(complete_as 0 nsjoin --socket "$tmp/broker.sock" -t '')" "mine theirs" "root's targets"
expect_eq "$(complete_as 65534 nsjoin --socket "$tmp/broker.sock" -t '')" "theirs" \
  "uid 65534's targets"
expect_eq "$(complete_as 0 nsjoin --socket "$tmp/broker.sock" -t m)" "mine" "a prefix"
expect_eq "$(complete_as 0 nsjoin --li)" "--list" "an nsjoin option"
expect_eq "$(complete_as 0 nsbrokerd --check)" "--check-config" "an nsbrokerd option"
expect_eq "$(complete_as 0 jailme --li)" "--list" "a jailme option"
for f in _nsjoin _nsbrokerd _jailme; do zsh -n "$src/packaging/completion/$f"; done
echo "completion: OK"
