#!/usr/bin/env bash
# usage: check_base.sh BINARY ALLOWED_LIBRARIES ALLOWED_SYMBOLS
# jailme's trusted base may not grow unnoticed: fails (1) when BINARY needs a shared library
# that is not in ALLOWED_LIBRARIES, contains a project symbol (demangled, starting with
# nsbroker::, parameters and clone suffixes dropped; not a std:: or protobuf template that
# merely returns one of our types; generated wire code counted per message, so that a new
# field is no change but a new message is) that is not in ALLOWED_SYMBOLS, or
# contains std::thread. A change that needs more edits the lists, in review.
set -euo pipefail
binary=$1 libraries=$2 symbols=$3
name=$(basename "$binary")
status=0
allowed() { grep -v -e '^#' -e '^$' "$1" || true; }
allowed_libraries=$(allowed "$libraries")
allowed_symbols=$(allowed "$symbols")

while read -r lib; do
  if ! grep -qxF -- "$lib" <<<"$allowed_libraries"; then
    echo "$name: linked library not in $(basename "$libraries"): $lib"
    status=1
  fi
done < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')

# clang names some functions returning std::string NAME[abi:cxx11] where g++ does not: drop the tag.
project=$(nm -C --defined-only "$binary" | cut -d' ' -f3- |
  sed -e 's/ \[clone [^]]*\]//g' -e 's/\[abi:cxx11\]//g' -e 's/(anonymous namespace)/{anonymous}/g' |
  grep -E '^((vtable|typeinfo|typeinfo name|guard variable) for )?nsbroker::' |
  sed -e 's/(.*//' | grep -vE ' (std|google|__gnu_cxx)::' |
  sed -E 's/^((vtable|typeinfo|typeinfo name) for )?(nsbroker::v1::[A-Za-z0-9]+).*/\3/' | sort -u)
while read -r sym; do
  [ -n "$sym" ] || continue
  if ! grep -qxF -- "$sym" <<<"$allowed_symbols"; then
    echo "$name: project symbol not in $(basename "$symbols"): $sym"
    status=1
  fi
done <<<"$project"

if nm -C "$binary" | grep -c 'std::thread' >/dev/null; then
  echo "$name: links std::thread"
  status=1
fi
echo "$name: $(stat -c %s "$binary") bytes, $(nm "$binary" | wc -l) symbols," \
  "$(grep -c . <<<"$project") project symbols, needs:" \
  "$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | xargs)"
exit "$status"
