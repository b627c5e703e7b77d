#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 480
#
# Taking the tcm_loop LUN and the user device away while I/O is in flight
# and the handler cannot answer.  cmd_time_out is 5 s (set before export).
# Cases:
#
#   ignore       the handler takes every command and answers none
#                (--ignore all); it notices the device going away and exits
#   stopped      the handler is frozen with SIGSTOP; SIGCONT afterwards,
#                when it finds its device gone and exits
#   stopped-kill frozen, then killed once the device is gone: the last
#                reference to the device memory goes with its mapping
#   dead-0       the handler is killed first (handler_exit_policy=0: its
#                commands are bounced, their retries wait on the ring)
#   dead-1       the same with handler_exit_policy=1 (its commands stay)
#
# fio (libaio) and dd (synchronous O_DIRECT reads, which sleep in D state)
# start while a plain handler answers; once both are at work the handler
# stops answering (replaced by the ignoring one, stopped or killed), and
# 0.3 s later, with commands in flight (checked), the LUN link, LUN, port,
# WWN, device and HBA are removed one after the other.  In every case:
#   - the whole removal, until the SCSI disk is gone, takes no longer
#     than cmd_time_out + 5 s;
#   - afterwards every process is unblocked: fio and dd end (with I/O
#     errors) within 10 s, the handler exits (or can be killed), no task
#     is left in D state;
#   - the uio device is gone and no tcm-user uio device is left;
#   - run_tests.sh checks the kernel log (lockdep on the debug kernel).

# shellcheck source=lib_dp.sh
. "$(dirname "$0")/lib_dp.sh"

dp_init
dp_require fio
[ -x "$TCMU_PYTHON" ] || command -v "$TCMU_PYTHON" > /dev/null ||
	tcmu_skip "python3 is not installed"

TMO=5
LIMIT=$((TMO + 5))
out=

# Tasks in D state right now, "pid comm" per line (no fork per task).
d_tasks()
{
	local f st comm rest
	for f in /proc/[0-9]*/stat; do
		read -r st < "$f" 2>/dev/null || continue
		rest=${st##*) }
		[ "${rest%% *}" == D ] || continue
		comm=${st#*(}
		echo "${f//[^0-9]/} ${comm%%)*}"
	done
}

# disk_users N: at least N open files refer to $DP_DISK.
# shellcheck disable=SC2317 # called through dp_wait_secs
disk_users()
{
	local f n=0
	for f in /proc/[0-9]*/fd/*; do
		[ "$f" -ef "$DP_DISK" ] && n=$((n + 1))
	done 2>/dev/null
	[ "$n" -ge "$1" ]
}

# shellcheck disable=SC2317 # called through dp_wait_secs
no_d_tasks()
{
	[ -z "$(d_tasks)" ]
}

# remove: LUN link, LUN, port, WWN, device, HBA, then the disk is gone.
# Runs in the background, in one python process so that the times are
# the kernel's and not those of starting rm and rmdir under TCG; each
# step and the end go to $DP_WORK/removal.
remove()
{
	"$TCMU_PYTHON" - "$DP_WORK/removal" "$DP_LUN_LINK" "$DP_TPG/lun/lun_0" \
		"$DP_TPG" "$DP_LOOPBACK/$DP_WWN" "$DP_DEV" \
		"$(tcmu_hba_path "$DP_HBA")" "/sys/block/$DP_BLK" <<'EOF'
import os, sys, time

out, link, lun, tpg, wwn, dev, hba, blk = sys.argv[1:9]
t0 = time.monotonic()
with open(out, 'w', buffering=1) as f:
    def step(name, fn, path):
        try:
            fn(path)
            f.write('%s %.1f\n' % (name, time.monotonic() - t0))
        except OSError as e:
            f.write('%s failed: %s\n' % (name, e.strerror))
    step('unlink', os.unlink, link)
    for name, path in (('lun', lun), ('tpg', tpg), ('wwn', wwn),
                       ('device', dev), ('hba', hba)):
        step(name, os.rmdir, path)
    while os.path.exists(blk) and time.monotonic() - t0 < 120:
        time.sleep(0.02)
    f.write('done %.1f\n' % (time.monotonic() - t0))
EOF
}

# shellcheck disable=SC2317 # called through dp_wait_secs
removal_done()
{
	grep -q '^done ' "$DP_WORK/removal" 2>/dev/null
}

# If the removal hangs: unstick whatever can be, so that the test ends.
unstick()
{
	[ -n "$DP_HANDLER_PID" ] && kill -KILL "$DP_HANDLER_PID" 2>/dev/null
	[ -d "$DP_DEV" ] && tcmu_write "$DP_DEV/action/reset_ring" 2
}

# run_case NAME HBA POLICY HANDLER-OPTION...
run_case()
{
	local name=$1 hba=$2 policy=$3 t st uio fio_pid dd_pid rpid secs
	shift 3

	dp_section "$name"
	dp_create "$hba" "td$hba" "dev_size=$((32 << 20)),cmd_ring_size_mb=1,max_data_area_mb=4" ||
		return 1
	dp_attr cmd_time_out "$TMO" || return 1
	[ -e "$DP_DEV/attrib/handler_exit_policy" ] ||
		tcmu_skip "the module has no attrib/handler_exit_policy"
	dp_attr handler_exit_policy "$policy" || return 1
	dp_handler_start || return 1
	dp_export || return 1
	uio=$DP_UIO

	# I/O first, served by a plain handler, so that both fio and dd are
	# surely at work when the handler stops answering; then at most
	# cmd_time_out may pass before the removal, or nothing is in flight.
	# (a fio started late must not lay out a regular file at /dev/sdX)
	DP_FIO_TIMEOUT=120 dp_fio "fio-$name" --rw=randrw --bsrange=4k-64k \
		--iodepth=16 --size=16m --time_based --runtime=100 \
		--allow_file_create=0 &
	fio_pid=$!
	dp_bg_add "$fio_pid"
	# synchronous O_DIRECT reads of the whole disk, over and over
	# shellcheck disable=SC2016 # expanded by that shell
	timeout -k 5 120 sh -c 'while dd if="$1" of=/dev/null bs=64k \
		iflag=direct 2> "$2"; do :; done' dd "$DP_DISK" "$DP_WORK/dd-$name" &
	dd_pid=$!
	dp_bg_add "$dd_pid"
	if ! dp_wait_secs 60 disk_users 2; then
		fail "$name: fio and dd do not both have $DP_DISK open"
		return 1
	fi
	if ! dp_wait_secs 20 dp_stat_above inflight 0; then
		fail "$name: no command reached the ring"
		return 1
	fi

	t=$SECONDS
	case $name in
	ignore)
		# a handler that takes every command and answers none
		dp_handler_stop
		dp_handler_start "$@" || return 1
		;;
	stopped*) kill -STOP "$DP_HANDLER_PID" ;;
	dead*) dp_handler_kill ;;
	esac
	dp_nap 300
	st=$(dp_stat inflight)
	tcmu_log "$name: $st commands in flight $((SECONDS - t))s after the handler stopped answering, removing everything"
	if ! check_true "$name: I/O is in flight at the removal ($st commands)" \
		test "${st:-0}" -gt 0; then
		unstick
		return 1
	fi

	remove &
	rpid=$!
	if ! dp_wait_secs $((LIMIT + 30)) removal_done; then
		fail "$name: the removal hangs: $(tr '\n' ' ' < "$DP_WORK/removal")"
		unstick
		dp_wait_secs 60 removal_done
	fi
	wait "$rpid"
	tcmu_log "$name: removal steps (s): $(tr '\n' ' ' < "$DP_WORK/removal")"
	secs=$(sed -n 's/^done //p' "$DP_WORK/removal")
	check_true "$name: LUN and device removed within ${LIMIT}s (${secs:-?}s)" \
		dp_float_cmp "${secs:-999}" "<=" "$LIMIT"
	check_true "$name: device directory gone" test ! -e "$DP_DEV"
	check_true "$name: uio device $uio gone" test ! -e "/sys/class/uio/$uio"
	check_eq "$name: no tcm-user uio device left" "" "$(tcmu_all_uio)"

	# The handler: gone by itself, or released now.
	case $name in
	stopped-kill) dp_handler_kill ;;
	stopped) kill -CONT "$DP_HANDLER_PID" ;;
	esac
	if [ -n "$DP_HANDLER_PID" ]; then
		if dp_handler_wait_exit 10; then
			check_eq "$name: the handler noticed its device was gone and exited" \
				0 "$DP_HANDLER_RC"
		else
			fail "$name: the handler is still running 10 s after the removal"
			dp_handler_log 10
			dp_handler_kill
		fi
	fi
	t=$(dp_now)
	check_true "$name: fio ended" dp_wait_secs 10 dp_pid_gone "$fio_pid"
	check_true "$name: dd ended" dp_wait_secs 10 dp_pid_gone "$dd_pid"
	tcmu_log "$name: fio and dd gone $(dp_elapsed "$t")s after the removal ($(tail -n 1 "$DP_WORK/dd-$name"))"
	dp_bg_reap 5
	if ! dp_wait_secs 5 no_d_tasks; then
		fail "$name: tasks left in D state: $(d_tasks | tr '\n' ';')"
	else
		pass "$name: no task in D state"
	fi
	# everything is gone: nothing left for the EXIT trap
	DP_TORN_DOWN=1
	DP_DEV=
	DP_UIO=
	DP_TPG=
	DP_WWN=
	DP_HBA=
	DP_DISK=
	DP_BLK=
	DP_HANDLER_OPTS=()
}

# one_case ...: run_case, and clean up after a case that failed half way.
one_case()
{
	run_case "$@" && return 0
	[ -n "$DP_HANDLER_PID" ] && kill -CONT "$DP_HANDLER_PID" 2>/dev/null
	[ -n "$DP_TORN_DOWN" ] || dp_teardown quiet
}

one_case ignore 95 0 --ignore all
one_case stopped 96 0
one_case stopped-kill 97 0
one_case dead-0 98 0
one_case dead-1 99 1

st=$(dp_kmsg_since "$DP_KMSG_MARK" | grep -c 'ring broken')
check_eq "kernel log: no ring marked broken" 0 "$st"
tcmu_log "test took $((SECONDS - DP_T0))s"
tcmu_finish
