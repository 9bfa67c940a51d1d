#!/usr/bin/env bash
# usage: links_neither.sh BINARY [ARCHIVE...]
# What the root opener runs links neither protobuf nor libevent (broker/CMakeLists.txt,
# nsbroker_targets): fails (1) when BINARY needs a shared library of either, or when BINARY or
# an object of an ARCHIVE defines or refers to a symbol of either. A static archive only says
# what its objects would pull in: a binary links just the objects it uses, so the archive is
# checked whole.
set -euo pipefail
binary=$1
shift
status=0
libraries='^lib(protobuf|protobuf-lite|event|event_core|event_extra|event_pthreads)[-.]'
symbols='google::protobuf|^(event|evutil|evbuffer|bufferevent|evconnlistener|evsignal)_'
needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
while read -r lib; do
  if grep -qE -- "$libraries" <<<"$lib"; then
    echo "$(basename "$binary"): needs $lib"
    status=1
  fi
done <<<"$needed"
for file in "$binary" "$@"; do
  # nm -C: 16 hex digits (or blanks), the type letter, then the demangled name from column 20.
  found=$(nm -C "$file" | cut -c20- | grep -E -- "$symbols" | sort -u | head -5 || true)
  if [ -n "$found" ]; then
    echo "$(basename "$file"): protobuf or libevent symbols:"
    echo "$found"
    status=1
  fi
done
echo "$(basename "$binary"): needs: $(xargs <<<"$needed")"
exit "$status"
