#!/bin/bash
# The README's first program launched by Open MPI's mpirun: dsm_init must
# learn rank, size and addresses from PMIx. Skips (77) with the reason when
# mpirun or PMIx support is missing; with TEST_REQUIRE_MPIRUN=1 (CI: .ci/run)
# that is a failure instead.
# usage: test-mpirun.sh HELLO HAVE_PMIX(true|false)
set -u
hello=$1 have_pmix=$2
skip() {
	if [ "${TEST_REQUIRE_MPIRUN:-0}" = 1 ]; then
		echo "FAIL (TEST_REQUIRE_MPIRUN=1): $*"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}
[ "$have_pmix" = true ] ||
	skip "libdsm was built without PMIx (install libpmix-dev and reconfigure)"
command -v mpirun >/dev/null ||
	skip "mpirun not installed (Debian: apt-get install openmpi-bin)"
for n in 2 4; do
	# -x: mpirun passes only the variables it is told to
	out=$(timeout 120 mpirun --allow-run-as-root --oversubscribe -n "$n" \
		-x DSM_PEER_TIMEOUT_MS=3000 ${LSAN_OPTIONS:+-x LSAN_OPTIONS} \
		${ASAN_OPTIONS:+-x ASAN_OPTIONS} "$hello" 2>&1)
	rc=$?
	want="sum $((n * (n + 1) / 2))"
	if [ $rc -ne 0 ] || ! grep -qxF "$want" <<<"$out"; then
		echo "FAIL: mpirun -n $n hello: exit $rc, want the line '$want', got:"
		echo "$out"
		exit 1
	fi
	echo "ok: mpirun -n $n: $want"
done
