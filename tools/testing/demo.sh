#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make demo`: build everything, boot the stock Debian kernel in a VM with
# our module, serve a user device with our test handler through tcm_loop,
# make a filesystem on it and read files back.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

tools/testing/vm/setup.sh
KDIR=/usr/src/linux-headers-6.1.0-56-amd64
mkdir -p build/stock
cp -a Makefile Kconfig target_core_user.c target_core_user.h include build/stock/
make -s -C "$KDIR" M="$top/build/stock" modules
make -s -C tools/testing/tcmu-handler

exec tools/testing/vm/run-vm.sh --kernel stock --timeout 600 \
	--module build/stock/target_core_user.ko -- tools/testing/demo-guest.sh
