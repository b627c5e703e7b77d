#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Host test: include/uapi/linux/target_core_user.h must be byte-compatible
# with the upstream header that Debian's linux-libc-dev installs as
# /usr/include/linux/target_core_user.h (x86_64).
#
#  1. tools/testing/uapi/tcmu_layout.c is built against each header and
#     prints sizes, offsets, alignments and types of every struct and
#     member, every constant and enumerator, the helpers' signatures and
#     their results; the two dumps must be identical.
#  2. The sets of macro names and of TCMU_* identifiers must be identical.
#  3. When gdb is present, its "ptype /o" view of every struct (which also
#     lists member names and padding holes) must be identical.
#  4. Our header must compile as C (c99..c17, gnu variants) and C++
#     (c++11..c++20) with -Wall -Wextra -Werror and a stricter C warning
#     set, and -pedantic must not warn about anything upstream's doesn't.
#  5. -I include/uapi must make <linux/target_core_user.h> resolve to ours.
#
# Run from the repository root (or anywhere); exit 0 when all checks pass,
# 4 (skip) when the upstream header cannot be had, 1 on any failure.
# Needs gcc and g++; gdb is optional.

set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
# UAPI_LAYOUT_OURS=FILE checks another copy (used to test this test).
OURS=${UAPI_LAYOUT_OURS:-$ROOT/include/uapi/linux/target_core_user.h}
UPSTREAM=/usr/include/linux/target_core_user.h
UAPI_DIR=$ROOT/tools/testing/uapi
W=$(mktemp -d /tmp/uapi-layout.XXXXXX)
trap 'rm -rf "$W"' EXIT

pass=0
fail=0
skip=0
ok()  { echo "ok - $*"; pass=$((pass + 1)); }
bad() { echo "not ok - $*"; fail=$((fail + 1)); }
skp() { echo "ok - $* # SKIP"; skip=$((skip + 1)); }
finish() {
	echo "uapi-layout: $pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ]
	exit
}

if [ ! -f "$UPSTREAM" ]; then
	echo "# $UPSTREAM missing: installing linux-libc-dev"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		linux-libc-dev >/dev/null 2>&1; then
		apt-get update -q >/dev/null 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			linux-libc-dev >/dev/null 2>&1
	fi
fi
if [ ! -f "$UPSTREAM" ]; then
	echo "SKIP: no upstream header: $UPSTREAM missing and" \
	     "linux-libc-dev could not be installed"
	exit 4
fi
if [ ! -f "$OURS" ]; then
	bad "our header $OURS missing"
	finish
fi
if [ "$(uname -m)" != x86_64 ]; then
	echo "# warning: host is $(uname -m), the reference layout is x86_64"
fi
echo "# upstream: $UPSTREAM (linux-libc-dev" \
     "$(dpkg-query -W -f='${Version}' linux-libc-dev 2>/dev/null || echo '?'))"
echo "# ours:     $OURS"

# Copies outside the system include path, so that compiler diagnostics
# are not silenced for one of them.
mkdir -p "$W/up/linux" "$W/ours/linux"
cp "$UPSTREAM" "$W/up/linux/target_core_user.h"
cp "$OURS" "$W/ours/linux/target_core_user.h"
UP_COPY=$W/up/linux/target_core_user.h
OURS_COPY=$W/ours/linux/target_core_user.h

# ---- 1. layout dump ----
build_dump() {
	gcc -std=gnu11 -g -O0 -Wall -Wextra -Werror -Wno-type-limits \
		-DTCMU_HDR="\"$1\"" \
		-o "$2" "$UAPI_DIR/tcmu_layout.c"
}
if build_dump "$UPSTREAM" "$W/dump-up" && build_dump "$OURS" "$W/dump-ours"
then
	"$W/dump-up" >"$W/up.txt"
	"$W/dump-ours" >"$W/ours.txt"
	echo "# compared layout dump ($(wc -l <"$W/ours.txt") lines):"
	grep -v '^set_\|^get ' "$W/ours.txt" | sed 's/^/#   /'
	echo "#   ... plus $(grep -c '^set_\|^get ' "$W/ours.txt") lines of helper results"
	if diff -u "$W/up.txt" "$W/ours.txt" >"$W/dump.diff"; then
		ok "layout, constants and helpers identical to upstream"
	else
		cat "$W/dump.diff"
		bad "layout dump differs from upstream"
	fi
else
	bad "layout dump program does not build against both headers"
fi

# ---- 2. names ----
macro_names() {
	printf '#include "%s"\n' "$1" | gcc -E -dM -x c - |
		awk '{ sub(/\(.*/, "", $2); print $2 }' | sort -u
}
printf '#include <linux/types.h>\n#include <linux/uio.h>\n' |
	gcc -E -dM -x c - | awk '{ sub(/\(.*/, "", $2); print $2 }' |
	sort -u >"$W/base-macros"
macro_names "$UPSTREAM" | comm -23 - "$W/base-macros" >"$W/up-macros"
macro_names "$OURS" | comm -23 - "$W/base-macros" >"$W/ours-macros"
echo "# macros: $(tr '\n' ' ' <"$W/ours-macros")"
if diff -u "$W/up-macros" "$W/ours-macros"; then
	ok "same $(wc -l <"$W/ours-macros") macro names as upstream"
else
	bad "macro names differ from upstream"
fi

idents() {
	gcc -E -P -x c "$1" | grep -oE '\b_*[A-Za-z0-9]*(TCMU|tcmu)_[A-Za-z0-9_]*\b' |
		sort -u
}
idents "$UP_COPY" >"$W/up-idents"
idents "$OURS_COPY" >"$W/ours-idents"
if diff -u "$W/up-idents" "$W/ours-idents"; then
	ok "same $(wc -l <"$W/ours-idents") enumerator/type/function names"
else
	bad "enumerator/type/function names differ from upstream"
fi

# ---- 3. debugger's view of the structs ----
if ! [ -x "$W/dump-ours" ] || ! [ -x "$W/dump-up" ]; then
	skp "no dump programs: no ptype comparison"
elif command -v gdb >/dev/null; then
	ptypes() {
		gdb -nx -batch \
			-ex 'ptype /o struct tcmu_mailbox' \
			-ex 'ptype /o struct tcmu_cmd_entry_hdr' \
			-ex 'ptype /o struct tcmu_cmd_entry' \
			-ex 'ptype /o struct tcmu_tmr_entry' \
			-ex 'ptype enum tcmu_opcode' \
			-ex 'ptype enum tcmu_genl_cmd' \
			-ex 'ptype enum tcmu_genl_attr' \
			"$1" 2>&1
	}
	ptypes "$W/dump-up" >"$W/up.ptype"
	ptypes "$W/dump-ours" >"$W/ours.ptype"
	if ! grep -q 'struct tcmu_mailbox' "$W/ours.ptype"; then
		skp "gdb could not describe the structs"
	elif diff -u "$W/up.ptype" "$W/ours.ptype"; then
		ok "gdb ptype /o of all structs and enums identical"
	else
		bad "gdb ptype /o differs from upstream"
	fi
else
	skp "gdb not installed: no ptype comparison"
fi

# ---- 4. usability as C and C++ ----
STRICT_C="-Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition
	-Wshadow -Wundef -Wpointer-arith -Wcast-qual -Wcast-align
	-Wredundant-decls -Wdeclaration-after-statement"
try_build() {	# lang std header extra-flags...
	local lang=$1 std=$2 hdr=$3
	shift 3
	local cc=gcc
	[ "$lang" = c++ ] && cc=g++
	$cc -x "$lang" -std="$std" -Wall -Wextra -Werror "$@" \
		-DTCMU_HDR="\"$hdr\"" -c -o /dev/null \
		"$UAPI_DIR/tcmu_compile.c" >"$W/cc.log" 2>&1
}
for std in c99 c11 c17 gnu99 gnu11 gnu17; do
	# shellcheck disable=SC2086
	if try_build c "$std" "$OURS_COPY" $STRICT_C; then
		ok "C -std=$std -Wall -Wextra -Werror (+strict set)"
	else
		sed 's/^/#   /' "$W/cc.log" | head -n 20
		bad "C -std=$std does not compile cleanly"
	fi
done
for std in c++11 c++14 c++17 c++20; do
	if ! echo | g++ -x c++ -std="$std" -fsyntax-only - 2>/dev/null; then
		skp "g++ lacks -std=$std"
		continue
	fi
	if try_build c++ "$std" "$OURS_COPY"; then
		ok "C++ -std=$std -Wall -Wextra -Werror"
	else
		sed 's/^/#   /' "$W/cc.log" | head -n 20
		if try_build c++ "$std" "$UP_COPY"; then
			note="upstream's compiles"
		else
			note="upstream's fails too; an explicit cast in"
			note="$note tcmu_hdr_get_op() fixes it without ABI change"
		fi
		bad "C++ -std=$std does not compile cleanly ($note)"
	fi
done

# -pedantic: no complaint that upstream's header does not also draw
pedantic_warnings() {	# lang std header
	local cc=gcc
	[ "$1" = c++ ] && cc=g++
	$cc -x "$1" -std="$2" -pedantic -Wall -Wextra -DTCMU_HDR="\"$3\"" \
		-c -o /dev/null "$UAPI_DIR/tcmu_compile.c" 2>&1 |
		grep -E 'warning:|error:' |
		sed -E 's/^[^:]*:[0-9]+:[0-9]+: //' | sort -u
}
for spec in c:c11 c:c99 c++:c++17; do
	lang=${spec%%:*}
	std=${spec#*:}
	pedantic_warnings "$lang" "$std" "$UP_COPY" >"$W/ped-up"
	pedantic_warnings "$lang" "$std" "$OURS_COPY" >"$W/ped-ours"
	extra=$(comm -13 "$W/ped-up" "$W/ped-ours")
	if [ -z "$extra" ]; then
		ok "-pedantic $lang -std=$std: nothing beyond upstream's" \
		   "$(wc -l <"$W/ped-up") diagnostics"
	else
		# shellcheck disable=SC2001
		echo "$extra" | sed 's/^/#   /'
		bad "-pedantic $lang -std=$std: diagnostics upstream lacks"
	fi
done

# ---- 5. include path resolution ----
deps=$(printf '#include <linux/target_core_user.h>\n' |
	gcc -I "$ROOT/include/uapi" -x c -M - 2>/dev/null)
if echo "$deps" | grep -q "$ROOT/include/uapi/linux/target_core_user.h"; then
	ok "-I include/uapi resolves <linux/target_core_user.h> to ours"
else
	bad "-I include/uapi does not pick our header"
fi

finish
