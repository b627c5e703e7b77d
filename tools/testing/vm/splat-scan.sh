#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Find kernel reports (oops, BUG, WARNING, KASAN, UBSAN, lockdep, kmemleak,
# hung task, soft lockup, RCU stall, panic) in a console log or in dmesg
# output.
#
# Usage: splat-scan.sh [FILE]...      (standard input without FILE)
#
# Prints every offending line and exits 0 if there is at least one, 1 if
# there is none, 2 on a usage error.
#
# Only kernel messages are looked at: text that follows a printk time stamp
# "[  123.456789]" (optionally followed by a caller id such as "[ T123]").
# The guest's user space writes to the same serial console, so this keeps
# a test that merely prints "WARNING: ..." from counting as a kernel report,
# while a kernel line that starts in the middle of a user line still counts.
# The rig boots with printk.time=1 so every kernel line carries a stamp.
#
# The patterns are anchored on how the kernel words its reports, so the
# benign boot lines that share a word with them do not match, e.g.
#   "RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable ..."
#   "kmemleak: Kernel memory leak detector initialized (mempool ...)"
#   "kasan: KernelAddressSanitizer initialized (generic)"
#   "Kernel command line: ... panic=-1 ..."
#
# kmemleak summaries printed before the rig's "TCMU-VM-CMD-START" marker are
# about boot-time leaks (the module under test is not loaded yet; the guest
# clears them before starting the command) and are ignored; without that
# marker in the input they all count.

set -euo pipefail

for f in "$@"; do
	[[ -r $f ]] || {
		echo "splat-scan: cannot read $f" >&2
		exit 2
	}
done

exec awk '
BEGIN {
	n = 0
	# Each entry: an extended regular expression matched against the
	# message text (time stamp and caller id removed).
	# die(): every oops header has "<what>: <error code> [#<count>]",
	# e.g. "Oops: 0002 [#1] PREEMPT SMP", "invalid opcode: 0000 [#1]",
	# "general protection fault, ...: 0000 [#1]".
	pat[n++] = ": [0-9a-f][0-9a-f][0-9a-f][0-9a-f] \\[#[0-9]+\\]"
	pat[n++] = "^Oops"
	# BUG: NULL dereference, paging request, KASAN, KFENCE, sleeping in
	# atomic, scheduling while atomic, bad page state, workqueue lockup,
	# soft lockup ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s!").
	pat[n++] = "(^|: )BUG: "
	# BUG() and BUG_ON(): "kernel BUG at drivers/target/...:123!"
	pat[n++] = "kernel BUG at "
	# SLUB debugging: "BUG kmalloc-64 (Tainted: G  B): Redzone overwritten"
	pat[n++] = "^BUG [^ ]+ \\(.*\\): "
	# WARN(), WARN_ON() ("WARNING: CPU: 1 PID: 42 at ...") and the lockdep
	# headers ("WARNING: possible circular locking dependency detected",
	# "WARNING: inconsistent lock state", "WARNING: suspicious RCU usage",
	# "WARNING: bad unlock balance detected!" ...).  Only at the start of
	# the message: "RETBleed: WARNING: ..." is an ordinary boot notice.
	pat[n++] = "^WARNING: "
	# Lockdep once more, in case a report is worded without the header.
	pat[n++] = "possible [a-z -]*lock[a-z]* (dependency )?detected"
	pat[n++] = "possible (recursive|circular) locking"
	pat[n++] = "inconsistent lock state"
	pat[n++] = "lock held when returning to user space"
	# Sanitizers that report without "BUG:".
	pat[n++] = "^(UBSAN|KASAN|KMSAN|KCSAN): "
	# kmemleak after a scan: "kmemleak: 3 new suspected memory leaks (see
	# /sys/kernel/debug/kmemleak)".  Special-cased below (boot leaks).
	kml = "^kmemleak: [0-9]+ new suspected memory leak"
	# Hung tasks: "INFO: task tcmu-runner:123 blocked for more than 120 seconds."
	pat[n++] = "blocked for more than [0-9]+ seconds"
	# Lockup detectors and RCU stalls.
	pat[n++] = "soft lockup - CPU#"
	pat[n++] = "[Hh]ard LOCKUP"
	pat[n++] = "rcu.*detected stalls? on CPU"
	pat[n++] = "rcu.*self-detected stall"
	# The end of the line for everything else.
	pat[n++] = "Kernel panic - not syncing"
	pat[n++] = "general protection fault"
	pat[n++] = "Unable to handle kernel"
	# Any stack dump, whatever printed it.
	pat[n++] = "Call Trace:"
	started = 0
	found = 0
	held = 0
}
{
	sub(/\r+$/, "")
	if (index($0, "TCMU-VM-CMD-START")) {
		# Boot-time kmemleak summaries do not count.
		started = 1
		held = 0
	}
	if (!match($0, /\[ *[0-9]+\.[0-9]+\]/))
		next
	msg = substr($0, RSTART + RLENGTH)
	sub(/^ *\[ *[CT][0-9]+\]/, "", msg)
	sub(/^ +/, "", msg)
	if (msg ~ kml) {
		if (started) {
			print
			found = 1
		} else {
			hold[held++] = $0
		}
		next
	}
	for (i = 0; i < n; i++) {
		if (msg ~ pat[i]) {
			print
			found = 1
			next
		}
	}
}
END {
	for (i = 0; i < held; i++) {
		print hold[i]
		found = 1
	}
	exit found ? 0 : 1
}' "$@"
