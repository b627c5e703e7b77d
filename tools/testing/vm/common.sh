#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Shared definitions for the VM test rig.  Sourced (never run) by setup.sh,
# mkinitramfs.sh, run-vm.sh, rig-selftest.sh, ../check.sh and ../bench.sh.
#
# After "rig_kernel KIND" (KIND is stock or debug) these are set:
#   RIG_KIMAGE   the kernel image to boot
#   RIG_KREL     its release string (uname -r in the guest)
#   RIG_MODROOT  the directory that holds lib/modules/$RIG_KREL
#   RIG_KDIR     the tree to build out-of-tree modules against
#   RIG_KID      a short name for cache files that belong to this kernel
#   RIG_DEFMEM   default guest memory in MiB
#
# shellcheck disable=SC2034 # the variables are for the scripts that source this

set -euo pipefail

RIG_VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG_TESTING_DIR=$(dirname "$RIG_VM_DIR")
RIG_REPO=$(cd "$RIG_TESTING_DIR/../.." && pwd)
TCMU_CACHE=${TCMU_CACHE:-/var/cache/tcmu-rig}
export TCMU_CACHE

# The Debian kernel the stock runs use; its headers package must match.
RIG_STOCK_KREL=6.1.0-56-amd64
RIG_STOCK_PKG=linux-image-$RIG_STOCK_KREL
RIG_STOCK_DIR=$TCMU_CACHE/stock

rig_msg() { echo "${RIG_NAME:-rig}: $*" >&2; }
rig_die() {
	rig_msg "error: $*"
	exit 1
}

# Fill in the RIG_* variables for one kernel flavour.  Returns 1 (after a
# message) when that kernel is not available yet.
rig_kernel() {
	local dir
	case $1 in
	stock)
		RIG_KREL=$RIG_STOCK_KREL
		RIG_KIMAGE=$RIG_STOCK_DIR/boot/vmlinuz-$RIG_KREL
		RIG_MODROOT=$RIG_STOCK_DIR
		RIG_KDIR=/usr/src/linux-headers-$RIG_KREL
		RIG_KID=stock
		RIG_DEFMEM=2048
		if [[ ! -e $RIG_STOCK_DIR/.complete ]]; then
			rig_msg "the stock kernel is not unpacked in $RIG_STOCK_DIR; run tools/testing/vm/setup.sh"
			return 1
		fi
		;;
	debug)
		if [[ ! -x $RIG_VM_DIR/debug-kernel.sh ]] ||
			! dir=$("$RIG_VM_DIR/debug-kernel.sh" --print-dir); then
			rig_msg "the debug kernel is not built; run tools/testing/vm/setup.sh --debug"
			return 1
		fi
		RIG_KREL=$(<"$dir/krel")
		RIG_KIMAGE=$dir/bzImage
		RIG_MODROOT=$dir/modroot
		RIG_KDIR=$dir/build
		# The cache key is already part of the directory name.
		RIG_KID=$(basename "$dir")
		RIG_DEFMEM=4096
		;;
	*)
		rig_msg "unknown kernel '$1' (expected stock or debug)"
		return 1
		;;
	esac
}

# rig_copy_module_sources DIR: copy the module's sources (not the
# artefacts of an in-place build) from the repository into DIR, ready for
# "make -C KDIR M=DIR modules".
rig_copy_module_sources() {
	local f srcs=()
	for f in "$RIG_REPO"/{Makefile,Kbuild,Kconfig,include} "$RIG_REPO"/*.[ch]; do
		[[ -e $f && $f != *.mod.c ]] && srcs+=("$f")
	done
	cp -a "${srcs[@]}" "$1/"
}
