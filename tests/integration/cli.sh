#!/bin/sh
# cli.sh: the schakel command against the real schakeld.  Keys come from
# `schakel keygen`; a client configuration per party is written the way
# config/examples/utrecht/clients/README describes.  Checks send (payload
# from stdin, receipt printed), resolve, receive --json and raw, the exit
# codes (0 ok, 1 refused, 2 usage) and the "schakel: CODE: sentence" form.
# Of schakeld itself: `-n` (check the configuration and exit) and the
# "<N>" syslog priority on every line it logs.
#
# usage: cli.sh SCHAKELD SCHAKEL
set -eu

schakeld=$1
schakel=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/schakel-cli-XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
fail() {
	echo "cli.sh: FAIL: $*" >&2
	exit 1
}

mkdir -m 0700 "$dir/keys" "$dir/run"
"$schakel" keygen --broker --out "$dir/keys" >/dev/null
for p in gemeente team-a; do
	"$schakel" keygen --party "$p" --out "$dir/keys" >/dev/null
done

cat >"$dir/schakel.yaml" <<YAML
broker:
  endpoints: [tcp://127.0.0.1:*]
  data_dir: data
  key_file: keys/broker.key
  metrics: off
  admin_socket: run/control.sock
roles:
  - {id: municipality, description: Gemeente}
  - {id: debt_counselling, description: Schuldhulp}
parties:
  - {id: gemeente, name: Gemeente, role: municipality, regions: [GM0344], keys: keys/gemeente.pub}
  - {id: team-a, name: Team A, role: debt_counselling, regions: [GM0344], keys: keys/team-a.pub}
message_types:
  - {id: shv.melding.v1, description: Request for help}
agreements:
  - id: schuldhulp
    parties: [gemeente, team-a]
    purpose: schuldhulp
    legal_basis: Wgs art. 8
    valid_from: 2026-01-01
    retention_days: 90
    flows:
      - {from: {party: gemeente}, to: {party: team-a}, types: [shv.melding.v1]}
routes:
  - id: melding
    match: {type: shv.melding.v1, sender: gemeente}
    to: [{party: team-a}]
YAML

# schakeld -n checks and exits 0 without starting a broker.  Were it to
# start one, timeout(1) makes that a failure (124) instead of a hung test,
# and the store would have created the data folder.
set +e
out=$(timeout 10 "$schakeld" -n -c "$dir/schakel.yaml" 2>&1)
rc=$?
set -e
[ $rc -eq 0 ] || fail "schakeld -n: exit $rc: $out"
[ "$out" = "$dir/schakel.yaml: configuration OK" ] ||
	fail "schakeld -n printed '$out'"
[ ! -e "$dir/data" ] || fail "schakeld -n created the data folder"

# With one unknown key, schakeld -n refuses the file (exit 1) and names
# the place as file:line:column, so that an editor can jump to it.
sed 's/^  metrics: off$/&\
  metrix: off/' "$dir/schakel.yaml" >"$dir/broken.yaml"
set +e
out=$(timeout 10 "$schakeld" -n -c "$dir/broken.yaml" 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] || fail "schakeld -n on a broken file: exit $rc: $out"
want="$dir/broken.yaml:6:3: error: unknown key 'metrix' in the broker section"
echo "$out" | grep -qxF "$want; did you mean 'metrics'?" ||
	fail "schakeld -n on a broken file printed '$out'"

"$schakeld" -c "$dir/schakel.yaml" -E "$dir/endpoints" 2>"$dir/schakeld.log" &
pid=$!
i=0
while [ ! -s "$dir/endpoints" ]; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat "$dir/schakeld.log" >&2; fail "schakeld not ready"; }
	kill -0 "$pid" 2>/dev/null || { cat "$dir/schakeld.log" >&2; fail "schakeld exited"; }
	sleep 0.05
done
endpoint=$(head -n 1 "$dir/endpoints")

for p in gemeente team-a; do
	cat >"$dir/$p.yaml" <<YAML
broker:
  endpoint: $endpoint
  keys: keys/broker.pub
party: $p
key_file: keys/$p.key
peers: keys/
purpose: schuldhulp
timeout: 5s
seen_file: $p.seen
YAML
done

# resolve names the recipient and its agreement.
out=$("$schakel" resolve -c "$dir/gemeente.yaml" --type shv.melding.v1 --case zaak-1)
[ "$out" = "team-a schuldhulp" ] || fail "resolve printed '$out'"

# send: payload from stdin, the receipt printed and saved.
out=$(printf 'aanmelding\n' | "$schakel" send -c "$dir/gemeente.yaml" \
	--type shv.melding.v1 --case zaak-1 --attr bron=balie --urgent \
	--receipt "$dir/receipt.bin" --payload -)
case $out in
accepted*" to team-a (schuldhulp)") ;;
*) fail "send printed '$out'" ;;
esac
[ -s "$dir/receipt.bin" ] || fail "no receipt saved"
printf 'tweede' >"$dir/payload"
"$schakel" send -c "$dir/gemeente.yaml" --type shv.melding.v1 --case zaak-1 \
	--payload "$dir/payload" >/dev/null

# receive --json: one line per message with the payload in base64.
out=$("$schakel" receive -c "$dir/team-a.yaml" --count 1 --timeout 10 --json)
echo "$out" | grep -q '"sender":"gemeente"' || fail "json: $out"
echo "$out" | grep -q '"case":"zaak-1"' || fail "json: $out"
echo "$out" | grep -q '"urgent":true' || fail "json: $out"
echo "$out" | grep -q '"attributes":{"bron":"balie"}' || fail "json: $out"
b64=$(printf 'aanmelding\n' | base64)
echo "$out" | grep -q "\"payload\":\"$b64\"" || fail "json payload: $out"

# receive raw: the payload as it was sent.
out=$("$schakel" receive -c "$dir/team-a.yaml" --count 1 --timeout 10 2>/dev/null)
[ "$out" = "tweede" ] || fail "raw receive printed '$out'"
# Both ids were kept in the seen file: its header and two 16-byte ids.
[ "$(wc -c <"$dir/team-a.seen")" -eq 48 ] || fail "seen file: $(wc -c <"$dir/team-a.seen") bytes"

# A receive whose output cannot be written (a full disk) stops at the
# first message, exit 1, and takes no more: the message comes again with
# one delivery spent, not one for every retry until the timeout.
printf 'derde' | "$schakel" send -c "$dir/gemeente.yaml" --type shv.melding.v1 \
	--case zaak-2 --payload - >/dev/null
set +e
"$schakel" receive -c "$dir/team-a.yaml" --timeout 8 >/dev/full 2>"$dir/full.err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "receive into a full disk: exit $rc"
[ "$(grep -c 'message .* from gemeente' "$dir/full.err")" -eq 1 ] ||
	fail "receive into a full disk took $(grep -c 'message .* from gemeente' "$dir/full.err") messages"
out=$("$schakel" receive -c "$dir/team-a.yaml" --count 1 --timeout 10 --json)
echo "$out" | grep -q '"delivery_count":2,' || fail "after a full disk: $out"

# A notice that cannot be written out is not acknowledged either: the
# receive stops, exit 1, and the next one gets it.
printf 'vierde' | "$schakel" send -c "$dir/gemeente.yaml" --type shv.melding.v1 \
	--case zaak-3 --notify --payload - >/dev/null
"$schakel" receive -c "$dir/team-a.yaml" --count 1 --timeout 10 >/dev/null 2>&1
set +e
"$schakel" receive -c "$dir/gemeente.yaml" --json --timeout 5 >/dev/full 2>/dev/null
rc=$?
set -e
[ $rc -eq 1 ] || fail "notice into a full disk: exit $rc"
out=$("$schakel" receive -c "$dir/gemeente.yaml" --json --timeout 3)
echo "$out" | grep -q '"notice":"delivered"' || fail "the notice was lost: '$out'"

# Refusals: exit 1 with "schakel: CODE: sentence".
set +e
err=$("$schakel" send -c "$dir/gemeente.yaml" --type shv.onbekend.v1 \
	--case zaak-1 --payload "$dir/payload" 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] || fail "unknown type: exit $rc"
case $err in
"schakel: UNKNOWN_TYPE: "*) ;;
*) fail "unknown type printed '$err'" ;;
esac
set +e
err=$("$schakel" send -c "$dir/gemeente.yaml" --type shv.melding.v1 \
	--case 111222333 --payload "$dir/payload" 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] || fail "BSN: exit $rc"
case $err in
"schakel: BSN_AS_CASE: "*) ;;
*) fail "BSN printed '$err'" ;;
esac

# Usage errors: exit 2.
set +e
"$schakel" send -c "$dir/gemeente.yaml" --case zaak-1 --payload - \
	</dev/null 2>/dev/null
rc=$?
set -e
[ $rc -eq 2 ] || fail "missing --type: exit $rc"
set +e
"$schakel" receive -c "$dir/team-a.yaml" --count many 2>/dev/null
rc=$?
set -e
[ $rc -eq 2 ] || fail "bad --count: exit $rc"

# A broken client configuration: file:line:column and exit 1.
printf 'broker:\n  endpoint: %s\nparty: team-a\n' "$endpoint" >"$dir/bad.yaml"
set +e
err=$("$schakel" receive -c "$dir/bad.yaml" 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] || fail "bad config: exit $rc"
case $err in
"schakel: $dir/bad.yaml:2:3: broker: the broker's public keys are missing"*) ;;
*) fail "bad config printed '$err'" ;;
esac

# Every line the broker logged carries its syslog priority "<0>" to "<7>",
# or journald would file it at the default level.  The ready line and the
# connections above make sure there is something to look at.
grep -q '^<[0-7]>schakeld: ready ' "$dir/schakeld.log" ||
	{ cat "$dir/schakeld.log" >&2; fail "schakeld logged no ready line"; }
if grep -qv '^<[0-7]>' "$dir/schakeld.log"; then
	grep -nv '^<[0-7]>' "$dir/schakeld.log" >&2
	fail "schakeld logged lines without a priority"
fi
echo "cli.sh: ok"
