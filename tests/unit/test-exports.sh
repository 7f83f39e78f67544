#!/usr/bin/env bash
# The shared library exports the public API (dsm_*) and nothing else: no
# internal dsm__ symbol, nothing of the libraries it links statically.
set -u
lib=$1
[ -f "$lib" ] || { echo "no library at $lib"; exit 1; }
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort)
bad=$(printf '%s\n' "$syms" | grep -v -E '^dsm_[a-z]' || true)
internal=$(printf '%s\n' "$syms" | grep -E '^dsm__' || true)
echo "exported: $(printf '%s\n' "$syms" | tr '\n' ' ')"
fail=0
[ -z "$bad" ] || { echo "FAIL: exported symbols outside the dsm_ API: $bad"; fail=1; }
[ -z "$internal" ] || { echo "FAIL: internal dsm__ symbols exported: $internal"; fail=1; }
printf '%s\n' "$syms" | grep -qx dsm_strerror || { echo "FAIL: dsm_strerror is not exported"; fail=1; }
if [ $fail -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
