#!/bin/sh
# mkstatic.sh OUT MAP OBJCOPY AR CC... -- ARCHIVE...: the installed static
# libschakel.
#
# The archives (the client library, the codec, the common code) are
# linked into one relocatable object by the build's own compiler driver
# (so that its target and linker are used), in which every global
# symbol but the public API named in the version script MAP is then made
# local: an application linking libschakel.a may have its own fatal(),
# log_info() or keys_generate() without a clash, as with the shared
# library (whose version script does the same).
set -eu
out=$1
map=$2
objcopy=$3
ar=$4
shift 4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The compiler command runs up to "--"; the archives follow it.
n=0
for a in "$@"; do
	[ "$a" = "--" ] && break
	n=$((n + 1))
done
[ "$n" -lt "$#" ] || { echo "mkstatic.sh: no -- before the archives" >&2; exit 2; }
# The names between "global:" and "local:" in the version script.
sed -n '/global:/,/local:/s/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p' \
	"$map" >"$tmp/public"
[ -s "$tmp/public" ] || { echo "mkstatic.sh: no public symbols in $map" >&2; exit 1; }
# Rebuild "$@" as: CC... -r -nostdlib -o OBJ -Wl,--whole-archive ARCHIVE...
i=0
for a in "$@"; do
	shift
	if [ "$i" -lt "$n" ]; then
		set -- "$@" "$a"
	elif [ "$i" -eq "$n" ]; then
		set -- "$@" -r -nostdlib -o "$tmp/libschakel.o" -Wl,--whole-archive
	else
		set -- "$@" "$a"
	fi
	i=$((i + 1))
done
"$@" -Wl,--no-whole-archive
"$objcopy" --keep-global-symbols="$tmp/public" "$tmp/libschakel.o"
rm -f "$out"
"$ar" rcs "$out" "$tmp/libschakel.o"
