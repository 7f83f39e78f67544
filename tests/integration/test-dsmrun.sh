#!/bin/bash
# Integration test of dsmrun, the local launcher (demos/dsmrun.c), with plain
# shell programs as the ranks.  Usage: test-dsmrun.sh PATH-TO-DSMRUN
# Prints "ok"/"not ok" per case and "N passed, N failed"; exits 1 on failure.

# The ranks' scripts are single-quoted on purpose (SC2016); "A && B || fail"
# is used as a check whose failure branch is the only else (SC2015).
# shellcheck disable=SC2016,SC2015
set -u

DSMRUN=${1:?usage: test-dsmrun.sh PATH-TO-DSMRUN}
case $DSMRUN in /*) ;; *) DSMRUN=$PWD/$DSMRUN ;; esac
[ -x "$DSMRUN" ] || { echo "not executable: $DSMRUN"; exit 1; }

# What the caller's environment may carry must not leak into the cases.
unset DSM_RANK DSM_NODES DSM_PEERS DSM_CLUSTER DSM_BOOTSTRAP DSMRUN_GRACE_MS

T=$(mktemp -d /tmp/test-dsmrun.XXXXXX)
export TDIR=$T
passed=0
failed=0

# Pids recorded by the ranks: at exit, kill what a failed case left behind.
cleanup() {
	local f p
	for f in "$T"/*/pid.* "$T"/*/spid.*; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		alive "$p" && kill -KILL "$p" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((10#$t / 1000)); }

# alive PID: the process exists and is not a zombie (PID 1 may not reap).
alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	case ${st%% *} in ''|Z|X) return 1 ;; esac
	return 0
}

# all_dead FILE...: every pid in the files is gone, within 2 s.
all_dead() {
	local f p i
	for f in "$@"; do
		p=$(cat "$f") || { diag "no pid file $f"; return 1; }
		for ((i = 0; i < 40; i++)); do
			alive "$p" || continue 2
			sleep 0.05
		done
		diag "pid $p ($f) is still running"
		return 1
	done
}

# wait_lines FILE PATTERN COUNT: until COUNT lines of FILE match, max 10 s.
wait_lines() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
		sleep 0.05
	done
	diag "timed out waiting for $3 lines '$2' in $1"
	return 1
}

diag() { printf '    # %s\n' "$@"; }
show() { diag "--- $1:"; sed 's/^/    #   /' "$1" | head -20; }

# run NAME: runs case_NAME in its own directory $D with $out and $err.
run() {
	D=$T/$1
	mkdir -p "$D"
	out=$D/out err=$D/err
	: >"$out"; : >"$err"
	if "case_$1"; then
		passed=$((passed + 1))
		echo "ok - $1"
	else
		failed=$((failed + 1))
		echo "not ok - $1"
		show "$out"
		show "$err"
	fi
}

# expect WHAT ACTUAL EXPECTED
expect() {
	[ "$2" = "$3" ] && return 0
	diag "$1: got '$2', expected '$3'"
	return 1
}

case_environment_and_prefix() {
	local r line cluster peers p ports
	"$DSMRUN" -n 4 -- sh -c '
		echo "rank=$DSM_RANK nodes=$DSM_NODES cluster=$DSM_CLUSTER peers=$DSM_PEERS"
		echo "to-stderr $DSM_RANK" >&2' >"$out" 2>"$err"
	expect status $? 0 || return 1
	expect "stdout lines" "$(wc -l <"$out")" 4 || return 1
	for r in 0 1 2 3; do
		expect "rank $r lines" \
			"$(grep -c "^\[$r\] rank=$r nodes=4 cluster=[0-9]* peers=" "$out")" 1 || return 1
		grep -qx "\[$r\] to-stderr $r" "$err" || { diag "no stderr line of rank $r"; return 1; }
	done
	expect "stderr lines" "$(wc -l <"$err")" 4 || return 1  # no override note
	grep -q to-stderr "$out" && { diag "stderr went to stdout"; return 1; }
	expect "distinct DSM_CLUSTER" "$(sed 's/.*cluster=\([^ ]*\).*/\1/' "$out" | sort -u | wc -l)" 1 || return 1
	expect "distinct DSM_PEERS" "$(sed 's/.*peers=//' "$out" | sort -u | wc -l)" 1 || return 1
	line=$(head -1 "$out")
	cluster=${line#*cluster=}
	cluster=${cluster%% *}
	peers=${line##*peers=}
	[[ $cluster =~ ^[1-9][0-9]{0,9}$ ]] && ((cluster <= 4294967295)) ||
		{ diag "DSM_CLUSTER '$cluster' is not a nonzero 32-bit number"; return 1; }
	ports=()
	IFS=, read -ra p <<<"$peers"
	expect "peers" "${#p[@]}" 4 || return 1
	for line in "${p[@]}"; do
		[[ $line =~ ^127\.0\.0\.1:([0-9]+)$ ]] && ((BASH_REMATCH[1] > 0 && BASH_REMATCH[1] < 65536)) ||
			{ diag "bad peer '$line'"; return 1; }
		ports+=("${BASH_REMATCH[1]}")
	done
	expect "distinct ports" "$(printf '%s\n' "${ports[@]}" | sort -u | wc -l)" 4
}

case_default_two_ranks() {
	"$DSMRUN" sh -c 'echo "$DSM_RANK/$DSM_NODES"' >"$out" 2>"$err"
	expect status $? 0 &&
	expect output "$(sort "$out" | tr '\n' ' ')" "[0] 0/2 [1] 1/2 "
}

case_override_note() {
	DSM_RANK=99 DSM_PEERS=bogus DSM_BOOTSTRAP=10.0.0.1:1 OTHER=kept \
		"$DSMRUN" -n 2 -- sh -c 'echo "$DSM_RANK $DSM_PEERS ${DSM_BOOTSTRAP-unset} $OTHER"' \
		>"$out" 2>"$err"
	expect status $? 0 || return 1
	expect "override notes" "$(grep -c '^dsmrun: overriding' "$err")" 1 || return 1
	grep -q 'DSM_RANK' "$err" && grep -q 'DSM_PEERS' "$err" || { diag "note misses a name"; return 1; }
	grep -Eqx '\[0\] 0 127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+ unset kept' "$out" &&
	grep -Eqx '\[1\] 1 127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+ unset kept' "$out" ||
		{ diag "variables not overridden"; return 1; }
}

case_partial_and_long_lines() {
	# A line written in two pieces, the second after a pause, stays whole.
	"$DSMRUN" -n 1 -- sh -c 'printf "a\nfirst "; sleep 0.3; printf "half\nno newline"
		head -c 200000 /dev/zero | tr "\0" x >&2' >"$out" 2>"$err"
	expect status $? 0 || return 1
	expect stdout "$(cat "$out")" "$(printf '[0] a\n[0] first half\n[0] no newline')" || return 1
	grep -qv '^\[0\] x*$' "$err" && { diag "a piece of the long line lost its prefix"; return 1; }
	expect "x forwarded" "$(sed 's/^\[0\] //' "$err" | tr -d '\n' | wc -c)" 200000
}

case_exit_status_propagates() {
	local t0 t1
	t0=$(now_ms)
	"$DSMRUN" -n 4 -- sh -c '
		echo $$ > "$TDIR/exit_status_propagates/pid.$DSM_RANK"
		[ "$DSM_RANK" = 2 ] && exit 3
		exec sleep 100' >"$out" 2>"$err"
	expect status $? 3 || return 1
	t1=$(now_ms)
	diag "others killed after $((t1 - t0)) ms"
	((t1 - t0 < 10000)) || { diag "took $((t1 - t0)) ms"; return 1; }
	grep -qx 'dsmrun: rank 2 exited with status 3' "$err" || { diag "no report"; return 1; }
	expect "reports" "$(grep -c '^dsmrun: rank' "$err")" 1 || return 1
	all_dead "$D"/pid.*
}

case_killed_by_signal() {
	"$DSMRUN" -n 3 -- sh -c '[ "$DSM_RANK" = 1 ] && kill -KILL $$; exec sleep 100' \
		>"$out" 2>"$err"
	expect status $? 137 || return 1
	grep -qx 'dsmrun: rank 1 killed by signal 9 (SIGKILL)' "$err" || { diag "no report"; return 1; }
}

case_deadline() {
	local t0 t1
	t0=$(now_ms)
	"$DSMRUN" -n 3 -t 1 -- sh -c '
		echo $$ > "$TDIR/deadline/pid.$DSM_RANK"
		sleep 100 &
		echo $! > "$TDIR/deadline/spid.$DSM_RANK"
		wait' >"$out" 2>"$err"
	expect status $? 124 || return 1
	t1=$(now_ms)
	diag "exited after $((t1 - t0)) ms"
	((t1 - t0 < 5000)) || return 1
	grep -qx 'dsmrun: deadline of 1 s passed; killing all ranks' "$err" || { diag "no message"; return 1; }
	# The ranks and the sleeps they started (same process group).
	all_dead "$D"/pid.* "$D"/spid.* || return 1
	local files=("$D"/pid.* "$D"/spid.*)
	expect "pid files" "${#files[@]}" 6
}

case_deadline_plain_sleep() {
	local t0 t1
	t0=$(now_ms)
	"$DSMRUN" -n 2 -t 1 -- sleep 100 >"$out" 2>"$err"
	expect status $? 124 || return 1
	t1=$(now_ms)
	((t1 - t0 < 5000)) || { diag "took $((t1 - t0)) ms"; return 1; }
}

case_exec_failure() {
	local t0
	t0=$(now_ms)
	"$DSMRUN" -n 2 -- /nonexistent/program arg >"$out" 2>"$err"
	expect "missing: status" $? 127 || return 1
	grep -qx 'dsmrun: cannot run /nonexistent/program: No such file or directory' "$err" ||
		{ diag "no message"; return 1; }
	"$DSMRUN" -n 2 -- dsmrun-no-such-command-in-path >"$out" 2>>"$err"
	expect "not in PATH: status" $? 127 || return 1
	printf '#!/bin/sh\necho should not run\n' >"$D/noexec"
	chmod 644 "$D/noexec"
	"$DSMRUN" -n 2 -- "$D/noexec" >"$out" 2>>"$err"
	expect "not executable: status" $? 127 || return 1
	grep -q "cannot run $D/noexec: Permission denied" "$err" || { diag "no message"; return 1; }
	expect "stdout" "$(cat "$out")" "" || return 1
	(($(now_ms) - t0 < 5000)) || { diag "slow"; return 1; }
}

case_lines_not_interleaved() {
	# Ranks 0 and 1 write 4 KiB blocks that cut lines (seq into a pipe),
	# ranks 2 and 3 write each line in two write()s, all at the same time.
	"$DSMRUN" -n 4 -- sh -c '
		if [ "$DSM_RANK" -lt 2 ]; then
			seq -f "line %g" 0 999
		else
			i=0
			while [ $i -lt 1000 ]; do printf "line "; echo $i; i=$((i + 1)); done
		fi' >"$out" 2>"$err"
	expect status $? 0 || return 1
	expect "lines" "$(wc -l <"$out")" 4000 || return 1
	expect "malformed lines" "$(grep -cEv '^\[[0-3]\] line [0-9]+$' "$out")" 0 || return 1
	# Each rank's lines arrive complete and in order.
	awk '{ r = substr($1, 2, 1); if ($3 != n[r]++) { print "rank " r ": " $0; bad = 1 } }
	     END { for (r = 0; r < 4; r++) if (n[r] != 1000) bad = 1; exit bad }' "$out" >"$D/awk" ||
		{ show "$D/awk"; return 1; }
}

case_sigint_forwarded() {
	local pid rc
	# Job control, so the background dsmrun does not start with SIGINT ignored.
	set -m
	"$DSMRUN" -n 2 -- sh -c 'trap "echo got-INT; exit 5" INT; echo ready
		while :; do sleep 0.1; done' >"$out" 2>"$err" &
	pid=$!
	set +m
	wait_lines "$out" ready 2 || { kill -KILL $pid; return 1; }
	kill -INT $pid
	wait $pid
	rc=$?
	expect status $rc 5 || return 1
	grep -qx '\[0\] got-INT' "$out" && grep -qx '\[1\] got-INT' "$out" ||
		{ diag "a rank did not get exactly one SIGINT"; return 1; }
	expect "got-INT lines" "$(grep -c got-INT "$out")" 2
}

case_sigterm_forwarded() {
	local pid
	"$DSMRUN" -n 3 -- sh -c 'trap "echo got-TERM; exit 0" TERM; echo ready
		while :; do sleep 0.1; done' >"$out" 2>"$err" &
	pid=$!
	wait_lines "$out" ready 3 || { kill -KILL $pid; return 1; }
	kill -TERM $pid
	wait $pid
	expect status $? 0 || return 1
	expect "got-TERM lines" "$(grep -c got-TERM "$out")" 3
}

case_second_signal_kills() {
	local pid t0 t1
	"$DSMRUN" -n 2 -- sh -c 'trap "" TERM; echo $$ > "$TDIR/second_signal_kills/pid.$DSM_RANK"
		echo ready; while :; do sleep 0.1; done' >"$out" 2>"$err" &
	pid=$!
	wait_lines "$out" ready 2 || { kill -KILL $pid; return 1; }
	t0=$(now_ms)
	kill -TERM $pid
	sleep 0.3
	alive $pid || { diag "dsmrun exited on the first SIGTERM"; return 1; }
	kill -TERM $pid
	wait $pid
	expect status $? 137 || return 1
	t1=$(now_ms)
	((t1 - t0 < 3000)) || { diag "took $((t1 - t0)) ms"; return 1; }
	all_dead "$D"/pid.*
}

case_grace_lets_others_finish() {
	local t0 t1
	t0=$(now_ms)
	DSMRUN_GRACE_MS=5000 "$DSMRUN" -n 2 -- sh -c '
		[ "$DSM_RANK" = 0 ] && exit 1
		sleep 0.5; echo late' >"$out" 2>"$err"
	expect status $? 1 || return 1
	t1=$(now_ms)
	grep -qx '\[1\] late' "$out" || { diag "rank 1 was stopped during the grace period"; return 1; }
	((t1 - t0 < 4000)) || { diag "waited $((t1 - t0)) ms after every rank ended"; return 1; }
}

case_sigterm_ignored_then_sigkill() {
	local t0 t1
	# Rank 0 fails; ranks 2 and 3 stop on SIGTERM (their deaths must not
	# postpone the SIGKILL); rank 1 ignores SIGTERM and needs the SIGKILL,
	# due 1.5 s (grace) + 1 s after the failure.
	t0=$(now_ms)
	DSMRUN_GRACE_MS=1500 "$DSMRUN" -n 4 -- sh -c '
		[ "$DSM_RANK" = 0 ] && exit 4
		if [ "$DSM_RANK" = 1 ]; then trap "" TERM; else trap "exit 9" TERM; fi
		echo $$ > "$TDIR/sigterm_ignored_then_sigkill/pid.$DSM_RANK"
		while :; do sleep 0.1; done' >"$out" 2>"$err"
	expect status $? 4 || return 1
	t1=$(now_ms)
	diag "rank 1 killed after $((t1 - t0)) ms"
	((t1 - t0 < 3800)) || { diag "took $((t1 - t0)) ms, expected about 2500"; return 1; }
	grep -qx 'dsmrun: rank 1 did not stop after SIGTERM; sending SIGKILL' "$err" ||
		{ diag "no escalation message"; return 1; }
	expect "reports" "$(grep -c '^dsmrun: rank' "$err")" 2 || return 1
	all_dead "$D"/pid.*
}

case_two_jobs_differ() {
	"$DSMRUN" -n 2 -- sh -c 'echo "$DSM_CLUSTER"; sleep 0.3' >"$out" 2>"$err" &
	"$DSMRUN" -n 2 -- sh -c 'echo "$DSM_CLUSTER"; sleep 0.3' >"$out.2" 2>>"$err"
	wait $!
	expect "clusters" "$(cat "$out" "$out.2" | sed 's/^\[.\] //' | sort -u | wc -l)" 2
}

case_closed_stdout() {
	# dsmrun must not hang when its reader goes away; the ranks get SIGPIPE.
	timeout 20 "$DSMRUN" -n 2 -- seq 1 10000000 2>"$err" | head -1 >"$out"
	expect "dsmrun status" "${PIPESTATUS[0]}" 141 || return 1
	grep -qx '\[[01]\] 1' "$out" || { diag "first line missing"; return 1; }
}

case_usage() {
	"$DSMRUN" -h >"$out" 2>"$err"
	expect "-h status" $? 0 || return 1
	grep -q '^usage: dsmrun' "$out" && grep -q DSM_PEERS "$out" && grep -q DSM_CLUSTER "$out" &&
		grep -q DSM_RANK "$out" && grep -q DSM_NODES "$out" && grep -q -- '-t SECONDS' "$out" ||
		{ diag "-h does not document the options and variables"; return 1; }
	"$DSMRUN" >"$out" 2>"$err"
	expect "no PROGRAM status" $? 2 || return 1
	grep -q '^usage: dsmrun' "$err" || { diag "no usage on stderr"; return 1; }
	local bad
	for bad in "-n 0 true" "-n 65 true" "-n x true" "-t 0 true" "-t x true" "-x true" "-n"; do
		# shellcheck disable=SC2086
		"$DSMRUN" $bad >"$out" 2>"$err"
		expect "dsmrun $bad: status" $? 2 || return 1
		grep -q '^dsmrun: ' "$err" || { diag "dsmrun $bad: no message"; return 1; }
	done
	"$DSMRUN" -n 64 true >"$out" 2>"$err"
	expect "-n 64 status" $? 0
}

run environment_and_prefix
run default_two_ranks
run override_note
run partial_and_long_lines
run exit_status_propagates
run killed_by_signal
run deadline
run deadline_plain_sleep
run exec_failure
run lines_not_interleaved
run sigint_forwarded
run sigterm_forwarded
run second_signal_kills
run grace_lets_others_finish
run sigterm_ignored_then_sigkill
run two_jobs_differ
run closed_stdout
run usage

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
