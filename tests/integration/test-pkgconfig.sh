#!/bin/bash
# libdsm as a user gets it: `meson install` into a DESTDIR, then the
# README's first program (demos/hello.c) compiled against that tree with
# nothing but `cc $(pkg-config --cflags --libs libdsm)`, and run by the
# installed dsmrun on 2 nodes: its output must be exactly "[0] sum 3".
# Also: pkg-config --static resolves every private requirement, and when
# the build made a libdsm.a (-Ddefault_library=static|both) a static link
# of hello runs too.
# A library built with sanitizers needs a program built with them too.
# usage: test-pkgconfig.sh BUILD_ROOT PREFIX LIBDIR BINDIR HELLO_C B_SANITIZE
set -u
build=$1 prefix=$2 libdir=$3 bindir=$4 hello_c=$5 sanitize=${6:-none}
cflags=()
[ "$sanitize" = none ] || cflags=("-fsanitize=$sanitize")
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
case $bindir in /*) ;; *) bindir=$prefix/$bindir ;; esac
unset DSM_RANK DSM_NODES DSM_PEERS DSM_CLUSTER DSM_BOOTSTRAP

for tool in pkg-config "${CC:-cc}"; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool not installed"
		exit 77
	fi
done

T=$(mktemp -d /tmp/test-pkgconfig.XXXXXX)
trap 'rm -rf "$T"' EXIT
dest=$T/dest
fail() {
	echo "FAIL: $*"
	exit 1
}

out=$(meson install -C "$build" --no-rebuild --destdir "$dest" 2>&1) ||
	fail "meson install --destdir: $out"
pc=$dest$libdir/pkgconfig/libdsm.pc
[ -f "$pc" ] || fail "no libdsm.pc installed (looked for $pc)"
echo "ok: installed $pc"

# Our .pc from the installed tree, the system's for libfabric & co. The
# sysroot turns the .pc's $prefix/... into $dest$prefix/... (it would do
# the same to the system packages' paths: the private requirements are
# read without it).
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig
flags=$(PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs libdsm) ||
	fail "pkg-config --cflags --libs libdsm"
echo "ok: pkg-config --cflags --libs libdsm: $flags"
static=$(pkg-config --static --libs libdsm) || fail "pkg-config --static --libs libdsm"
echo "ok: pkg-config --static --libs libdsm: $static"

# shellcheck disable=SC2086 # the flags are words
"${CC:-cc}" "${cflags[@]}" -o "$T/hello" "$hello_c" $flags -Wl,-rpath,"$dest$libdir" ||
	fail "cc \$(pkg-config --cflags --libs libdsm) hello.c"
lib=$(ldd "$T/hello" | awk '$1 ~ /^libdsm\.so/ {print $3}')
[ "$lib" = "$dest$libdir/libdsm.so.0" ] ||
	fail "hello loads libdsm from '$lib', not from the installed tree"
echo "ok: hello built, loads $lib"

run() { # NAME PROGRAM: the installed dsmrun, 2 nodes, exact stdout
	local got rc
	got=$(timeout 120 "$dest$bindir/dsmrun" -n 2 -t 60 "$2" 2>"$T/err")
	rc=$?
	if [ $rc -ne 0 ] || [ "$got" != "[0] sum 3" ]; then
		echo "FAIL: $1: dsmrun -n 2: exit $rc, stdout want '[0] sum 3', got:"
		echo "$got"
		echo "stderr:"
		cat "$T/err"
		exit 1
	fi
	echo "ok: $1: dsmrun -n 2: $got"
}
run hello "$T/hello"

if [ -f "$dest$libdir/libdsm.a" ]; then
	# libdsm.a with the shared libraries of its private requirements (a
	# fully static link would need the static libraries of libfabric's own
	# dependencies, which Debian's libfabric-dev does not pull in).
	reqs=$(pkg-config --print-requires-private libdsm | awk '{print $1}')
	# shellcheck disable=SC2046,SC2086 # the flags are words
	"${CC:-cc}" "${cflags[@]}" -o "$T/hello-static" "$hello_c" \
		$(PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags libdsm) \
		"$dest$libdir/libdsm.a" $(pkg-config --libs $reqs) -pthread ||
		fail "static link of hello against libdsm.a"
	run hello-static "$T/hello-static"
else
	echo "note: no libdsm.a in this build (default_library=shared): static link not tried"
fi
