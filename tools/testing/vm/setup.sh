#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Prepare a machine for the VM test rig.  Idempotent: a second run only
# checks and returns within seconds.
#
# Usage: setup.sh [--debug | --headers-only]
#
#   1. installs the Debian packages the rig and the tests use (apt is only
#      touched when one of them is missing; services are kept from
#      starting during the install),
#   2. fetches Debian's linux-image-6.1.0-56-amd64 and unpacks it into
#      $TCMU_CACHE/stock (default /var/cache/tcmu-rig/stock), with a
#      modules.dep made by depmod,
#   3. builds the stock kernel's initramfs,
#   4. with --debug: builds (or finds) the debug kernel through
#      debug-kernel.sh, when that script exists, and its initramfs.
# --headers-only stops after installing what building the module against
# the stock headers needs (used by the top-level "make modules").

set -euo pipefail

# The rest of the script is one brace group: bash reads it whole before
# running any of it, so a checkout or an edit of this file while it runs
# (it may run for a long time) cannot make bash execute a half-read line.
{

RIG_NAME=setup
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Everything the rig, the module build and the tests run on the host or, via
# the shared root, in the guest.
PACKAGES=(
	qemu-system-x86 qemu-utils busybox-static kmod cpio gzip xz-utils
	util-linux iproute2 procps
	build-essential sparse bc bison flex libelf-dev libssl-dev dwarves
	"linux-headers-$RIG_STOCK_KREL" linux-source-6.1
	fio sg3-utils tcmu-runner targetcli-fb python3-rtslib-fb
	open-iscsi libiscsi-bin dbus e2fsprogs rsync lsscsi python3-docutils
)
# The subset for --headers-only.
BUILD_PACKAGES=(build-essential kmod bc bison flex libelf-dev libssl-dev dwarves
	"linux-headers-$RIG_STOCK_KREL")

want_debug=0 headers_only=0
case ${1:-} in
"") ;;
--debug) want_debug=1 ;;
--headers-only) headers_only=1 ;;
-h | --help)
	sed -n '4,/^$/s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*) rig_die "unknown argument '$1' (try --help)" ;;
esac
[[ $(id -u) == 0 ]] || rig_die "must run as root (apt-get, $TCMU_CACHE)"
export DEBIAN_FRONTEND=noninteractive

missing_packages() {
	local p st
	for p in "${PACKAGES[@]}"; do
		st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) || st=
		[[ $st == installed ]] || echo "$p"
	done
}

install_packages() {
	local missing policy=/usr/sbin/policy-rc.d ours=0
	mapfile -t missing < <(missing_packages)
	((${#missing[@]})) || return 0
	rig_msg "installing: ${missing[*]}"
	# Daemons such as tcmu-runner, iscsid or dbus must not start on the
	# host: the tests start their own copies inside the guest.
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		ours=1
	fi
	local rc=0
	{ apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } ||
		rc=$?
	((ours)) && rm -f "$policy"
	((rc == 0)) || rig_die "apt-get failed ($rc)"
	mapfile -t missing < <(missing_packages)
	((${#missing[@]} == 0)) || rig_die "still missing after apt-get: ${missing[*]}"
}

# Unpack the stock kernel package into $RIG_STOCK_DIR.  The .complete file
# (holding the package version) is written last, so an interrupted run
# starts over.
fetch_stock_kernel() {
	local tmp deb ver
	[[ -e $RIG_STOCK_DIR/.complete ]] && return 0
	mkdir -p "$TCMU_CACHE"
	tmp=$(mktemp -d "$TCMU_CACHE/.stock.XXXXXX")
	rig_msg "downloading $RIG_STOCK_PKG"
	# apt-get download saves into the current directory; as root it
	# would otherwise warn that the _apt user cannot write there.
	if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$RIG_STOCK_PKG"); then
		apt-get update -q
		(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$RIG_STOCK_PKG")
	fi
	deb=$(echo "$tmp"/*.deb)
	[[ -f $deb ]] || rig_die "apt-get download left no .deb in $tmp"
	ver=$(dpkg-deb -f "$deb" Version)
	dpkg-deb -x "$deb" "$tmp/root"
	[[ -e $tmp/root/boot/vmlinuz-$RIG_STOCK_KREL ]] || rig_die "$deb has no vmlinuz-$RIG_STOCK_KREL"
	# Debian ships no modules.dep; the guest's modprobe needs one.
	depmod -b "$tmp/root" "$RIG_STOCK_KREL"
	echo "$RIG_STOCK_PKG $ver" >"$tmp/root/.complete"
	rm -rf "$RIG_STOCK_DIR"
	mv "$tmp/root" "$RIG_STOCK_DIR"
	rm -rf "$tmp"
	rig_msg "unpacked $RIG_STOCK_PKG $ver into $RIG_STOCK_DIR"
}

if ((headers_only)); then
	PACKAGES=("${BUILD_PACKAGES[@]}")
	install_packages
	exit 0
fi
install_packages
fetch_stock_kernel
[[ -e /usr/src/linux-headers-$RIG_STOCK_KREL/Makefile ]] ||
	rig_die "/usr/src/linux-headers-$RIG_STOCK_KREL is incomplete"
"$RIG_VM_DIR/mkinitramfs.sh" --kernel stock >/dev/null

if ((want_debug)); then
	if [[ -x $RIG_VM_DIR/debug-kernel.sh ]]; then
		# Prints the directory on stdout; progress goes to stderr.
		"$RIG_VM_DIR/debug-kernel.sh" >/dev/null
		"$RIG_VM_DIR/mkinitramfs.sh" --kernel debug >/dev/null
	else
		rig_msg "warning: $RIG_VM_DIR/debug-kernel.sh does not exist; no debug kernel"
	fi
fi
rig_msg "ready (cache: $TCMU_CACHE)"
exit 0
}
