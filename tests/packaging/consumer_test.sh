#!/usr/bin/env bash
# libnsjoin as its packages install it (components libnsjoin0 and libnsjoin-dev into a temp
# prefix): a consumer built once with pkg-config and once with find_package joins a real
# broker's target; nothing of the source or build tree is on its include or library path.
#   consumer_test.sh BUILD_DIR SOURCE_DIR [CXXFLAGS]
# CXXFLAGS: what consumers of that build need too (-fsanitize=... for scripts/test --sanitize).
source "$(dirname "$0")/lib.sh"
build=$1 src=$2 cxxflags=${3:-}
prefix=$tmp/prefix
for component in libnsjoin0 libnsjoin-dev; do
  cmake --install "$build" --prefix "$prefix" --component "$component" >/dev/null
done
[ -z "$(find "$prefix" -name '*.a' -o -name '*.pb.h' -o -name '*.proto')" ] ||
  fail "installed archives or protobuf files: $(find "$prefix" -name '*.a' -o -name '*.pb.*')"
soname=$(readelf -d "$prefix/lib/libnsjoin.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
expect_eq "$soname" "libnsjoin.so.0" "SONAME"
start_broker "$build/broker/nsbrokerd" --self --socket "$tmp/broker.sock"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[[ " $(pkg-config --static --libs nsjoin) " == *" -lprotobuf "* ]] ||
  fail "pkg-config --static carries no protobuf: $(pkg-config --static --libs nsjoin)"
# shellcheck disable=SC2046  # pkg-config's words are meant to split
# shellcheck disable=SC2086  # cxxflags is a list of flags
g++ -std=c++23 $cxxflags -o "$tmp/with-pkg-config" "$src/tests/packaging/consumer/main.cc" \
  $(pkg-config --cflags --libs nsjoin) -Wl,-rpath,"$prefix/lib"
out=$("$tmp/with-pkg-config" "$tmp/broker.sock" self)
[[ $out =~ ^self:\ [1-9][0-9]*\ entries$ ]] || fail "pkg-config consumer: $out"

cmake -S "$src/tests/packaging/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_FLAGS="$cxxflags" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
out=$("$tmp/consumer/consumer" "$tmp/broker.sock" self)
[[ $out =~ ^self:\ [1-9][0-9]*\ entries$ ]] || fail "find_package consumer: $out"
echo "consumer: OK ($out)"
