#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Host test: does our target_core_user build as an in-tree module?
#
# Takes the debug kernel's source tree (see vm/debug-kernel.sh), puts our
# files in place of upstream's
#
#   target_core_user.c                    -> drivers/target/target_core_user.c
#   target_core_user.h (if present)       -> drivers/target/target_core_user.h
#   include/uapi/linux/target_core_user.h -> include/uapi/linux/target_core_user.h
#   Kconfig                               -> the "config TCM_USER2" stanza of
#                                            drivers/target/Kconfig
#
# and builds just drivers/target/target_core_user.ko with the debug
# kernel's .config, W=1 and -Werror for our object.  It then checks that
# Kconfig still yields CONFIG_TCM_USER2=m, that the .ko has a license and
# that every symbol it imports is exported by the kernel or another module.
#
# The cached tree is never written: the copy is a hard-link farm (cp -al) in
# a scratch directory next to the cache, and each replaced file is removed
# before the new one is written so the link to the cached inode is broken.
#
# Exit status: 0 pass, 4 skip (reason printed), anything else fail.
# TCMU_INTREE_SRC overrides where our files are taken from (default: the
# repository root); it exists to test this script with stand-in sources.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
ours=${TCMU_INTREE_SRC:-$repo}

skip() { echo "intree-build: SKIP: $*"; exit 4; }
fail() { echo "intree-build: FAIL: $*"; exit 1; }
say() { echo "intree-build: $*"; }

kdir=$("$repo/tools/testing/vm/debug-kernel.sh" --print-dir) ||
	skip "debug kernel not built (run tools/testing/vm/debug-kernel.sh)"
[[ -f $ours/target_core_user.c ]] || skip "$ours/target_core_user.c does not exist yet"
[[ -f $ours/Kconfig ]] || fail "$ours/Kconfig is missing"
[[ -f $ours/include/uapi/linux/target_core_user.h ]] ||
	fail "$ours/include/uapi/linux/target_core_user.h is missing"
grep -qE '^config[[:space:]]+TCM_USER2[[:space:]]*$' "$ours/Kconfig" ||
	fail "$ours/Kconfig does not define TCM_USER2"

start=$(date +%s)
work=$(mktemp -d "$(dirname "$kdir")/intree.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
src=$work/src
obj=$work/obj
log=$work/build.log

say "linking a copy of $kdir/src"
cp -al "$kdir/src" "$src"

# Write $2 over $1 inside the copy without touching the cached inode.
replace() {
	local dst=$src/$1 new=$2
	rm -f "$dst"
	cp "$new" "$dst"
}

replace drivers/target/target_core_user.c "$ours/target_core_user.c"
if [[ -f $ours/target_core_user.h ]]; then
	replace drivers/target/target_core_user.h "$ours/target_core_user.h"
fi
replace include/uapi/linux/target_core_user.h "$ours/include/uapi/linux/target_core_user.h"

# Swap the TCM_USER2 stanza: it runs from its "config" line up to the next
# top-level Kconfig statement.
kconfig=drivers/target/Kconfig
awk -v ours="$ours/Kconfig" '
	/^config[ \t]+TCM_USER2[ \t]*$/ {
		while ((getline line < ours) > 0)
			print line
		print ""
		skipping = 1; done++
		next
	}
	skipping && /^(config|menuconfig|source|if|endif|menu|endmenu|choice|endchoice|comment)([ \t]|$)/ {
		skipping = 0
	}
	!skipping { print }
	END { exit done != 1 }
' "$src/$kconfig" >"$work/Kconfig.new" || fail "no single TCM_USER2 stanza in $kconfig"
replace "$kconfig" "$work/Kconfig.new"

# Every file we replaced must now be a private copy.
for f in drivers/target/target_core_user.c include/uapi/linux/target_core_user.h "$kconfig"; do
	[[ $(stat -c %h "$src/$f") == 1 ]] || fail "$f is still hard-linked into the cache"
done

mkdir -p "$obj"
cp "$kdir/build/.config" "$obj/.config"

say "olddefconfig with our Kconfig"
if ! make -C "$src" O="$obj" olddefconfig >"$log" 2>&1; then
	cat "$log"
	fail "olddefconfig failed"
fi
if grep -E "$kconfig:[0-9]+:" "$log"; then
	fail "Kconfig complains about our stanza"
fi
grep -qx 'CONFIG_TCM_USER2=m' "$obj/.config" ||
	fail "CONFIG_TCM_USER2 is not =m with our Kconfig (dependencies?)"
if ! diff -u "$kdir/build/.config" "$obj/.config" >"$work/config.diff"; then
	say "note: our Kconfig changed the .config:"
	grep '^[-+][^-+]' "$work/config.diff" || true
fi

say "modules_prepare"
if ! nice make -C "$src" O="$obj" -j"$(nproc)" modules_prepare >>"$log" 2>&1; then
	tail -n 40 "$log"
	fail "modules_prepare failed"
fi

ko=$obj/drivers/target/target_core_user.ko
say "building drivers/target/target_core_user.ko (W=1, -Werror)"
if ! make -C "$src" O="$obj" W=1 CFLAGS_target_core_user.o=-Werror \
	drivers/target/target_core_user.ko >"$work/ko.log" 2>&1; then
	cat "$work/ko.log"
	fail "target_core_user.ko does not build in-tree"
fi
# Show any diagnostics even on success.  modpost runs without vmlinux.o
# here, so it cannot resolve imports and says so; the import check below
# does that job instead.
grep -iE 'warning|error' "$work/ko.log" |
	grep -vE 'vmlinux\.o is missing|Modules may not have|unresolved symbol warnings|undefined!$' || true
[[ -s $ko ]] || fail "make succeeded but $ko is missing"

license=$(modinfo -F license "$ko")
[[ -n $license ]] || fail "target_core_user.ko has no MODULE_LICENSE"

# Every undefined symbol must be exported by vmlinux or another module
# (upstream's own target_core_user does not count).
nm -u "$ko" | awk '{ print $2 }' | sort -u >"$work/imports"
awk -F '\t' '$3 != "drivers/target/target_core_user" { print $2 }' \
	"$kdir/build/Module.symvers" | sort -u >"$work/exports"
missing=$(comm -23 "$work/imports" "$work/exports")
if [[ -n $missing ]]; then
	echo "$missing"
	fail "target_core_user.ko uses symbols nobody exports"
fi

say "ok: $(stat -c %s "$ko") bytes, license $license, $(wc -l <"$work/imports") imports," \
	"$(($(date +%s) - start))s"
