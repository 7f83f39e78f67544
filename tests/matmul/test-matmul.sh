#!/bin/bash
# The matmul demo (demos/matmul.c) through dsmrun; rank 0's summary line
# must say PASS (or FAIL) and the job's exit status must agree.
# usage: test-matmul.sh DSMRUN MATMUL MODE
#   pager     N=256 at 1, 2, 3 and 4 nodes, N=250 with block 48 (not a
#             multiple of the node count or of the block size) at 3 and 4
#             nodes, and at 4 nodes N=256 with pages of C homed round-robin
#             and rank 0 filling A and B (writes to pages homed elsewhere:
#             diffs), with the pager in DSM_PAGER; exit 77 (skip) when the
#             demo reports that pager unavailable (dsm_init: DSM_ENOTSUP)
#   corrupt   --corrupt spoils one entry of C: the check must say FAIL and
#             the exit status must be non-zero (2 nodes, then the
#             single-process reference)
#   fault     at 4 nodes under the DSM_FAULT of the environment: N=256,
#             N=250 with block 48, and N=256 with diffs as above: PASS (the
#             statistics show the retransmissions)
set -u
dsmrun=$1 matmul=$2 mode=$3

# run NODES ARGS...: run the demo; sets out and rc.
run() {
	local nodes=$1
	shift
	if [ "$nodes" = ref ]; then
		out=$(timeout 120 "$matmul" --reference "$@" 2>&1)
	else
		out=$("$dsmrun" -n "$nodes" -t 90 "$matmul" "$@" 2>&1)
	fi
	rc=$?
}

fail() {
	echo "FAIL: $1 (exit $rc); output:"
	echo "$out"
	exit 1
}

# expect_pass NODES N ARGS...
expect_pass() {
	local nodes=$1 n=$2 t0=$SECONDS
	shift 2
	run "$nodes" -N "$n" "$@"
	if [ $rc -eq 77 ]; then
		echo "SKIP: ${DSM_PAGER:-auto} pager not available here:"
		echo "$out"
		exit 77
	fi
	grep -qE "^\[0\] matmul N=$n nodes=$nodes: compute .* check PASS$" <<<"$out" ||
		fail "dsmrun -n $nodes matmul -N $n $*: no PASS line"
	[ $rc -eq 0 ] || fail "dsmrun -n $nodes matmul -N $n $*: PASS but non-zero exit"
	echo "ok: ${DSM_PAGER:+DSM_PAGER=$DSM_PAGER }dsmrun -n $nodes matmul -N $n $*: PASS, exit 0 ($((SECONDS - t0)) s)"
	grep -F 'check' <<<"$out" | tail -n 1
}

case $mode in
pager)
	for nodes in 1 2 3 4; do
		expect_pass "$nodes" 256
	done
	for nodes in 3 4; do
		expect_pass "$nodes" 250 -b 48
	done
	expect_pass 4 256 --placement interleave --init rank0
	;;
corrupt)
	run 2 -N 256 --corrupt
	grep -qE '^\[0\] matmul N=256 nodes=2: compute .* check FAIL$' <<<"$out" ||
		fail "dsmrun -n 2 matmul --corrupt: no FAIL line"
	[ $rc -ne 0 ] || fail "dsmrun -n 2 matmul --corrupt: FAIL but exit 0"
	echo "ok: dsmrun -n 2 matmul -N 256 --corrupt: FAIL, exit $rc"
	grep -F 'worst' <<<"$out"
	run ref -N 256 --corrupt
	grep -qE '^matmul N=256 reference .* check FAIL$' <<<"$out" ||
		fail "matmul --reference --corrupt: no FAIL line"
	[ $rc -ne 0 ] || fail "matmul --reference --corrupt: FAIL but exit 0"
	echo "ok: matmul --reference -N 256 --corrupt: FAIL, exit $rc"
	;;
fault)
	echo "DSM_FAULT=${DSM_FAULT:-}"
	export DSM_STATS=1
	for args in "256" "250 -b 48" "256 --placement interleave --init rank0"; do
		# shellcheck disable=SC2086
		expect_pass 4 $args
		grep -E 'seed=|node +rfaults|^\[0\] +total ' <<<"$out"
	done
	;;
*)
	echo "unknown mode '$mode'"
	exit 2
	;;
esac
