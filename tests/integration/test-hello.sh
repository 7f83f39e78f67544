#!/bin/bash
# The README's first program at 1..4 nodes: rank 0 must print the exact sum.
# With README and HELLO_C: the README's first C block is demos/hello.c, byte
# for byte (users copy the README; the tests build the file).
# usage: test-hello.sh DSMRUN HELLO [README HELLO_C]
set -u
dsmrun=$1 hello=$2
if [ $# -ge 4 ]; then
	readme=$3 hello_c=$4
	if ! diff -u --label "README.md (first C block)" --label "$hello_c" \
		<(awk '/^```c$/ { f = 1; next } f && /^```$/ { exit } f' "$readme") "$hello_c"; then
		echo "FAIL: the README's hello differs from $hello_c (above): keep them identical"
		exit 1
	fi
	echo "ok: the README's hello is $hello_c"
fi
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
