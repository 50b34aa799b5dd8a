#!/bin/sh
# mkstatic.sh OUT MAP ARCHIVE...: the installed static libschakel.
#
# The archives (the client library, the codec, the common code) are
# linked into one relocatable object, in which every global symbol but
# the public API named in the version script MAP is made local: an
# application linking libschakel.a may then have its own fatal(),
# log_info() or keys_generate() without a clash, as with the shared
# library (whose version script does the same).
set -eu
out=$1
map=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The names between "global:" and "local:" in the version script.
sed -n '/global:/,/local:/s/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p' \
	"$map" >"$tmp/public"
[ -s "$tmp/public" ] || { echo "mkstatic.sh: no public symbols in $map" >&2; exit 1; }
${LD:-ld} -r -o "$tmp/libschakel.o" --whole-archive "$@" --no-whole-archive
${OBJCOPY:-objcopy} --keep-global-symbols="$tmp/public" "$tmp/libschakel.o"
rm -f "$out"
${AR:-ar} rcs "$out" "$tmp/libschakel.o"
