#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs the KUnit suite of the pure helpers (ring arithmetic, entry sizes,
# block allocator, deadline ordering). Only kernels built with KUnit (the
# debug kernel) have it; elsewhere the test is skipped.
# timeout: 120
set -u

if ! modinfo target_core_user_kunit >/dev/null 2>&1; then
	echo "SKIP: target_core_user_kunit not built for $(uname -r) (no KUnit)"
	exit 4
fi
if ! modprobe target_core_user_kunit; then
	echo "FAIL: cannot load target_core_user_kunit"
	exit 1
fi
res=/sys/kernel/debug/kunit/target_core_user/results
if [ ! -r "$res" ]; then
	echo "FAIL: no KUnit results at $res"
	exit 1
fi
cat "$res"
totals=$(grep -E '^# Totals: pass:[0-9]+ fail:[0-9]+' "$res" | tail -n1)
pass=$(sed -E 's/.*pass:([0-9]+).*/\1/' <<<"$totals")
fail=$(sed -E 's/.*fail:([0-9]+).*/\1/' <<<"$totals")
modprobe -r target_core_user_kunit || true
if [ -z "$totals" ] || [ "$fail" != 0 ] || [ "$pass" -lt 1 ]; then
	echo "FAIL: KUnit totals: '${totals:-missing}'"
	exit 1
fi
echo "PASS: KUnit $pass cases passed"
exit 0
