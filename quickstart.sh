#!/usr/bin/env bash
# libdsm quick start, for a Debian 12 machine (run as root, or with sudo for
# the package step):
#
#   ./quickstart.sh demo    install what is missing, build into build/, run the demo
#   ./quickstart.sh test    install what is missing, build into build/, run the tests
#
# Both are idempotent: packages already installed are not touched, and an
# existing build/ is reused.
set -euo pipefail
cd "$(dirname "$0")"

what=${1:-}
case "$what" in
demo | test) ;;
*)
	echo "usage: $0 demo|test" >&2
	exit 2
	;;
esac

# libpmix-dev: the PMIx bootstrap (programs started by mpirun); openmpi-bin:
# mpirun, so that the test of that path runs instead of skipping.
pkgs=(gcc libc6-dev pkg-config meson ninja-build python3 libfabric-dev liburcu-dev check libpmix-dev
	openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "quickstart: installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

[ -f build/build.ninja ] || meson setup build
ninja -C build

if [ "$what" = demo ]; then
	exec build/demos/dsmrun -n 4 build/demos/matmul
else
	exec meson test -C build --print-errorlogs
fi
