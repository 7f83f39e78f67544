#!/usr/bin/env bash
# The shared library exports the public API (dsm_*) and nothing else: no
# internal dsm__ symbol, nothing of the libraries it links statically; and
# with the public headers given, exactly the functions they declare with
# DSM_EXPORT (a new call that is declared but not exported, or exported
# but not declared, fails).
#   test-exports.sh LIB [HEADER...]
set -u
lib=$1
shift
[ -f "$lib" ] || { echo "no library at $lib"; exit 1; }
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort)
bad=$(printf '%s\n' "$syms" | grep -v -E '^dsm_[a-z]' || true)
internal=$(printf '%s\n' "$syms" | grep -E '^dsm__' || true)
echo "exported: $(printf '%s\n' "$syms" | tr '\n' ' ')"
fail=0
[ -z "$bad" ] || { echo "FAIL: exported symbols outside the dsm_ API: $bad"; fail=1; }
[ -z "$internal" ] || { echo "FAIL: internal dsm__ symbols exported: $internal"; fail=1; }
printf '%s\n' "$syms" | grep -qx dsm_strerror || { echo "FAIL: dsm_strerror is not exported"; fail=1; }
if [ $# -gt 0 ]; then
	# "DSM_EXPORT int dsm_lock(uint32_t id);" -> dsm_lock
	declared=$(sed -n -E 's/^DSM_EXPORT[^(]*[ *]([a-z_0-9]+)\(.*/\1/p' "$@" | sort -u)
	[ -n "$declared" ] || { echo "FAIL: no DSM_EXPORT declaration in $*"; fail=1; }
	missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$syms"))
	extra=$(comm -13 <(printf '%s\n' "$declared") <(printf '%s\n' "$syms"))
	[ -z "$missing" ] || { echo "FAIL: declared in the headers, not exported:" $missing; fail=1; }
	[ -z "$extra" ] || { echo "FAIL: exported, not declared in the headers:" $extra; fail=1; }
	echo "declared: $(printf '%s\n' "$declared" | wc -l), exported: $(printf '%s\n' "$syms" | wc -l)"
fi
if [ $fail -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
