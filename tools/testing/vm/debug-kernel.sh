#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build, or find already built, the TCMU debug kernel: Debian's
# linux-source-6.1 configured from allnoconfig + kvm_guest.config +
# debug.config (KASAN, UBSAN, lockdep, kmemleak, KUnit, fault injection, ...).
#
# Usage: debug-kernel.sh [--print-dir]
#
#   (no argument)  build unless a finished build with the same key exists,
#                  then print its directory on stdout
#   --print-dir    print the directory and exit 0 if that build is finished,
#                  exit 1 (printing nothing) otherwise; never builds
#
# Everything lives in $TCMU_CACHE/debug-<key>/ (TCMU_CACHE defaults to
# /var/cache/tcmu-rig), where <key> hashes the settings in debug.config (not
# its comments), the configure recipe below, RECIPE_VERSION and the
# linux-source package version:
#
#   src/        the unpacked kernel source (build/ refers to it; keep it)
#   build/      the O= object tree; usable as KDIR: make -C build M=$PWD
#   bzImage     the kernel image
#   krel        the kernel release string (uname -r in the guest)
#   modroot/    modules_install output: modroot/lib/modules/<krel>/
#   build.log   the full build log
#   .complete   written last; without it the directory is an unfinished build
#
# An interrupted build is resumed by the next run (make is incremental).
# Concurrent runs for the same key serialise on a lock file.

set -euo pipefail

# Bump when the build steps change in a way the hashed inputs do not show.
RECIPE_VERSION=1

SRC_PKG=linux-source-6.1
SRC_TARBALL=/usr/src/linux-source-6.1.tar.xz
# Build tools, by Debian package name.  dwarves is only needed if someone
# turns DEBUG_INFO_BTF on, but it is cheap and keeps that option open.
BUILD_DEPS=(build-essential bc bison flex libelf-dev libssl-dev dwarves
	    xz-utils kmod "$SRC_PKG")

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/debug.config
cache=${TCMU_CACHE:-/var/cache/tcmu-rig}

msg() { echo "debug-kernel: $*" >&2; }
die() { msg "error: $*"; exit 1; }

# The configure recipe.  Its text is part of the cache key (declare -f), so
# editing it invalidates old builds automatically.  Runs with the source
# tree as the current directory; $1 is the object dir, $2 the fragment.
configure_kernel() {
	local obj=$1 frag=$2 merged
	merged=$obj/tcmu-allconfig
	# kvm_guest.config first, then our fragment; drop the kvm_guest lines
	# for symbols the fragment sets itself so Kconfig does not warn about
	# every override.
	awk 'NR == FNR {
		if (match($0, /^(# )?CONFIG_[A-Za-z0-9_]+/)) {
			s = substr($0, RSTART, RLENGTH); sub(/^# /, "", s)
			mine[s] = 1
		}
		next
	}
	{
		if (match($0, /^(# )?CONFIG_[A-Za-z0-9_]+/)) {
			s = substr($0, RSTART, RLENGTH); sub(/^# /, "", s)
			if (s in mine)
				next
		}
		print
	}' "$frag" kernel/configs/kvm_guest.config >"$merged"
	cat "$frag" >>"$merged"
	# allnoconfig turns every visible option off except what the
	# "all config" file sets; olddefconfig then settles the rest.
	make O="$obj" KCONFIG_ALLCONFIG="$merged" allnoconfig
	make O="$obj" olddefconfig
}

pkg_version() {
	dpkg-query -W -f='${Version}' "$1" 2>/dev/null
}

cache_key() {
	local ver
	ver=$(pkg_version "$SRC_PKG") || return 1
	[[ -n $ver ]] || return 1
	{
		echo "recipe $RECIPE_VERSION"
		echo "source $SRC_PKG $ver"
		declare -f configure_kernel
		echo "fragment"
		# Only the settings count, so editing a comment does not
		# throw away a 10-minute build.
		grep -E '^(CONFIG_|# CONFIG_[A-Za-z0-9_]+ is not set)' "$fragment"
	} | sha256sum | cut -c1-16
}

# Install whatever build dependency is missing (fresh CI machines).
install_deps() {
	local missing=() p st
	for p in "${BUILD_DEPS[@]}"; do
		st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) || st=
		[[ $st == installed ]] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	msg "installing build dependencies: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
		apt-get update
		apt-get install -y --no-install-recommends "${missing[@]}"
	fi
}

# Compare the final .config with every line of the fragment.  Prints one
# line per symbol and returns non-zero if any request was not honoured.
verify_config() {
	local config=$1 frag=$2
	awk -v cfg="$config" '
	BEGIN {
		while ((getline line < cfg) > 0) {
			if (match(line, /^CONFIG_[A-Za-z0-9_]+=/))
				have[substr(line, 1, RLENGTH - 1)] = substr(line, RLENGTH + 1)
		}
		bad = 0; n = 0
	}
	/^CONFIG_[A-Za-z0-9_]+=/ {
		i = index($0, "="); sym = substr($0, 1, i - 1); want = substr($0, i + 1)
	}
	/^# CONFIG_[A-Za-z0-9_]+ is not set/ { sym = $2; want = "n" }
	/^CONFIG_/ || /^# CONFIG_[A-Za-z0-9_]+ is not set/ {
		got = (sym in have) ? have[sym] : "n"
		n++
		if (got == want)
			st = "ok"
		else if (want == "m" && got == "y")
			st = "ok (built in: selected by a built-in option)"
		else {
			st = "MISSING"; bad++
		}
		printf "  %-40s want %-14s got %-14s %s\n", sym, want, got, st
	}
	END {
		printf "config check: %d symbols, %d not as requested\n", n, bad
		exit bad != 0
	}' "$frag"
}

print_dir=0
case ${1:-} in
"") ;;
--print-dir) print_dir=1 ;;
-h | --help)
	sed -n '4,/^$/s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*) die "unknown argument: $1 (try --help)" ;;
esac

if ((print_dir)); then
	key=$(cache_key) || exit 1
	out=$cache/debug-$key
	[[ -e $out/.complete ]] || exit 1
	echo "$out"
	exit 0
fi

[[ $(id -u) == 0 ]] || msg "warning: not root; apt-get and the default cache dir need root"
install_deps
[[ -r $SRC_TARBALL ]] || die "$SRC_TARBALL missing although $SRC_PKG is installed"

key=$(cache_key) || die "cannot determine the $SRC_PKG version"
out=$cache/debug-$key
mkdir -p "$cache"

# One builder per key; a second caller waits, then finds the stamp.
exec 9>"$cache/debug-$key.lock"
if ! flock -n 9; then
	msg "another build of $out is running; waiting for it"
	flock 9
fi

if [[ -e $out/.complete ]]; then
	echo "$out"
	exit 0
fi

mkdir -p "$out"
log=$out/build.log
src=$out/src
obj=$out/build

on_error() {
	msg "build FAILED; last lines of $log:"
	tail -n 60 "$log" >&2 || true
}
trap on_error ERR

start=$(date +%s)
{
	echo "=== $(date -u '+%F %T') debug kernel build, key $key"
	echo "=== $SRC_PKG $(pkg_version "$SRC_PKG"), recipe $RECIPE_VERSION, $(gcc --version | head -n1)"
} >>"$log"

# Unpack once; the .unpacked marker guards against a half-extracted tree.
if [[ ! -e $src/.unpacked ]]; then
	msg "unpacking $SRC_TARBALL into $src"
	rm -rf "$src"
	mkdir -p "$src"
	tar -xJf "$SRC_TARBALL" -C "$src" --strip-components=1
	touch "$src/.unpacked"
fi

msg "configuring (log: $log)"
mkdir -p "$obj"
(cd "$src" && configure_kernel "$obj" "$fragment") >>"$log" 2>&1

echo "=== config check" >>"$log"
if ! verify_config "$obj/.config" "$fragment" >"$out/config-check.txt"; then
	cat "$out/config-check.txt" >>"$log"
	grep -E 'MISSING|config check' "$out/config-check.txt" >&2
	die "debug.config asks for symbols the final .config lacks (dependency missing?)"
fi
cat "$out/config-check.txt" >>"$log"
tail -n 1 "$out/config-check.txt" >&2
msg "$(grep -c '=[ym]$' "$obj/.config") options =y/=m"

jobs=$(nproc)
msg "building with -j$jobs (log: $log); this takes a while"
nice make -C "$src" O="$obj" -j"$jobs" all >>"$log" 2>&1

krel=$(make -s -C "$src" O="$obj" kernelrelease 2>>"$log")
[[ -n $krel ]] || die "empty kernel release"

msg "installing modules for $krel"
rm -rf "$out/modroot"
make -C "$src" O="$obj" INSTALL_MOD_PATH="$out/modroot" modules_install >>"$log" 2>&1
# modules_install runs depmod only if it finds it; make sure it ran.
/sbin/depmod -b "$out/modroot" "$krel"
[[ -s $out/modroot/lib/modules/$krel/modules.dep ]] || die "depmod produced no modules.dep"

cp "$obj/arch/x86/boot/bzImage" "$out/bzImage"
echo "$krel" >"$out/krel"

elapsed=$(($(date +%s) - start))
echo "=== done in ${elapsed}s" >>"$log"
touch "$out/.complete"
trap - ERR
msg "built $krel in $((elapsed / 60))m$((elapsed % 60))s"
echo "$out"
