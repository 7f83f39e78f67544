#!/bin/bash
# The README's first program at 1..4 nodes: rank 0 must print the exact sum.
# usage: test-hello.sh DSMRUN HELLO
set -u
dsmrun=$1 hello=$2
for n in 1 2 3 4; do
	out=$("$dsmrun" -n "$n" -t 60 "$hello" 2>&1)
	rc=$?
	want="[0] sum $((n * (n + 1) / 2))"
	if [ $rc -ne 0 ] || ! grep -qxF "$want" <<<"$out"; then
		echo "FAIL: dsmrun -n $n hello: exit $rc, want the line '$want', got:"
		echo "$out"
		exit 1
	fi
	echo "ok: $n nodes: $want"
done
