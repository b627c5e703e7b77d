#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the data-path tests (tcmu_dp_*.sh).  On top of lib.sh they
# build the whole stack a data-path test needs:
#
#   user backstore (configfs) -> UIO ring -> tcmu-handler (user space)
#                 \-> tcm_loop LUN -> SCSI disk /dev/sdX (the initiator)
#
# and take it apart again.  A test calls, in this order,
#
#   dp_init                       root, modules, tools, EXIT trap
#   dp_create HBA NAME CONTROL    device configured and enabled -> DP_DEV,
#                                 DP_UIO (uioN)
#   dp_handler_start [OPT...]     tcmu-handler serving /dev/$DP_UIO
#   dp_export                     tcm_loop nexus + LUN -> DP_DISK (/dev/sdX)
#   ... the test ...
#   dp_teardown                   everything removed, with checks
#   tcmu_finish
#
# dp_teardown also runs from the EXIT trap when a test dies half way; it
# then first makes sure nothing is left waiting in the kernel (commands on
# the ring are flushed with action/reset_ring and a plain handler serves
# whatever the SCSI layer still sends while the disk goes away).
#
# shellcheck disable=SC2034 # variables here are used by the sourcing tests

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DP_TARGET=$CONFIGFS/target
DP_LOOPBACK=$DP_TARGET/loopback

DP_HBA=
DP_NAME=
DP_DEV=
DP_UIO=
DP_HANDLER_BIN=
DP_HANDLER_PID=
DP_HANDLER_OPTS=()
DP_HANDLER_LOG=
DP_WWN=
DP_TPG=
DP_LUN_LINK=
DP_ADDR=
DP_DISK=
DP_BLK=
DP_BG_PIDS=()
DP_MOUNTS=()
DP_TORN_DOWN=
DP_WORK=
DP_DEBUG=
DP_HANDLER_FILE=
DP_KMSG_MARK=
DP_T0=$SECONDS
DP_SECTION_T=$SECONDS

# ---------------------------------------------------------------------------
# Set-up

# The debug kernel (KASAN, lockdep, kmemleak) runs I/O several times slower
# under TCG; tests shrink their volumes when this returns true.
dp_is_debug()
{
	case "$(uname -r)" in
	*tcmu-debug*) return 0 ;;
	esac
	[ -e "$KMEMLEAK" ]
}

# dp_scale NORMAL DEBUG: print the value fitting the running kernel.
dp_scale()
{
	if [ -n "$DP_DEBUG" ]; then
		echo "$2"
	else
		echo "$1"
	fi
}

# Locate the test handler: $TCMU_HANDLER, the one built in the tree, or
# one built now into $TCMU_OUT (the tree may be read-only in the guest).
dp_find_handler()
{
	local src=$TCMU_DIR/../../tcmu-handler
	local out=$TCMU_OUT/bin/tcmu-handler.d

	if [ -n "${TCMU_HANDLER:-}" ] && [ -x "$TCMU_HANDLER" ]; then
		DP_HANDLER_BIN=$TCMU_HANDLER
		return 0
	fi
	if [ -x "$src/tcmu-handler" ]; then
		DP_HANDLER_BIN=$src/tcmu-handler
		return 0
	fi
	if [ -x "$out/tcmu-handler" ]; then
		DP_HANDLER_BIN=$out/tcmu-handler
		return 0
	fi
	mkdir -p "$out" || return 1
	make -s -C "$src" O="$out" "$out/tcmu-handler" >&2 || return 1
	DP_HANDLER_BIN=$out/tcmu-handler
}

# dp_require CMD...: skip the test when a tool is missing.
dp_require()
{
	local c
	for c in "$@"; do
		command -v "$c" > /dev/null 2>&1 || tcmu_skip "$c is not installed"
	done
}

dp_init()
{
	tcmu_require_root
	tcmu_load_user
	dp_require sg_raw dd timeout
	if [ ! -d /sys/module/tcm_loop ]; then
		modprobe tcm_loop 2>/dev/null ||
			tcmu_skip "tcm_loop is not available (CONFIG_LOOPBACK_TARGET)"
	fi
	# Without udev nothing loads sd_mod when the LUN shows up.
	modprobe sd_mod 2>/dev/null
	dp_find_handler || tcmu_skip "the test handler tools/testing/tcmu-handler cannot be built"
	DP_WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcmu-dp.XXXXXX") ||
		tcmu_fatal "cannot create a scratch directory"
	if dp_is_debug; then
		DP_DEBUG=1
		tcmu_log "debug kernel: smaller I/O volumes"
	fi
	# A crashing handler must not spend time writing a core file.
	ulimit -c 0
	DP_KMSG_MARK="start of ${0##*/} $$"
	dp_kmsg_mark "$DP_KMSG_MARK"
	trap dp_exit_trap EXIT
}

dp_exit_trap()
{
	[ -n "$DP_TORN_DOWN" ] || dp_teardown quiet
	tcmu_cleanup
	[ -n "$DP_WORK" ] && rm -rf "$DP_WORK"
	return 0
}

# dp_section TITLE: log the start of a part of a test, with the time the
# previous part took.
dp_section()
{
	tcmu_log "--- $1 (previous part took $((SECONDS - DP_SECTION_T))s)"
	DP_SECTION_T=$SECONDS
}

# Elapsed seconds (with tenths) since a reference taken with dp_now.
dp_now()
{
	local t
	read -r t _ < /proc/uptime
	echo "$t"
}

dp_elapsed()
{
	awk -v a="$1" -v b="$(dp_now)" 'BEGIN { printf "%.1f", b - a }'
}

# dp_nap MS: a timed wait without forking sleep (cheap under TCG).  A read
# with a timeout on a FIFO nobody writes to; it may return early (a
# signal), so it goes on until the time is really up.
DP_NAP_FD=
dp_nap()
{
	local end=$((${EPOCHREALTIME/./} + $1 * 1000)) left t
	if [ -z "$DP_NAP_FD" ]; then
		mkfifo "$DP_WORK/nap.fifo" &&
			exec {DP_NAP_FD}<> "$DP_WORK/nap.fifo" || return 1
	fi
	while left=$((end - ${EPOCHREALTIME/./})) && [ "$left" -gt 0 ]; do
		printf -v t '%d.%06d' $((left / 1000000)) $((left % 1000000))
		read -r -t "$t" -u "$DP_NAP_FD" _
	done
	return 0
}

# dp_wait_secs SECONDS COMMAND...: run COMMAND every 50 ms until it
# succeeds; give up after SECONDS of wall time, however long each try
# takes (tcmu_wait_for counts tries, which a slow COMMAND stretches).
dp_wait_secs()
{
	local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
	shift
	until "$@"; do
		[ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
		dp_nap 50
	done
	return 0
}

# dp_float_cmp A OP B: floating point comparison (OP is < <= > >=).
dp_float_cmp()
{
	awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
		if (op == "<") exit !(a < b)
		if (op == "<=") exit !(a <= b)
		if (op == ">") exit !(a > b)
		if (op == ">=") exit !(a >= b)
		exit 2 }'
}

# ---------------------------------------------------------------------------
# The user backstore

# dp_create HBA NAME CONTROL: create, configure and enable the device.
dp_create()
{
	DP_TORN_DOWN=
	DP_HBA=$1
	DP_NAME=$2
	DP_DEV=$(tcmu_dev_path "$1" "$2")
	tcmu_mkdev "$1" "$2" || { fail "mkdir user_$1/$2"; return 1; }
	if ! tcmu_write "$DP_DEV/control" "$3"; then
		fail "control $3: $TCMU_ERR"
		return 1
	fi
	if ! tcmu_write "$DP_DEV/enable" 1; then
		fail "enable user_$1/$2: $TCMU_ERR"
		return 1
	fi
	DP_UIO=$(tcmu_find_uio "$(tcmu_uio_name "$1" "$2")")
	if ! [[ "$DP_UIO" =~ ^uio[0-9]+$ ]]; then
		fail "user_$1/$2: expected one uio device, found $(tcmu_show "$DP_UIO")"
		DP_UIO=
		return 1
	fi
	if ! tcmu_wait_for 5 test -c "/dev/$DP_UIO"; then
		fail "/dev/$DP_UIO did not appear"
		return 1
	fi
	tcmu_log "user_$1/$2 is /dev/$DP_UIO ($3)"
}

# dp_attr NAME VALUE: write one attribute of the device; fails the test
# (and returns 1) when the kernel refuses it.
dp_attr()
{
	if tcmu_write "$DP_DEV/attrib/$1" "$2"; then
		return 0
	fi
	fail "attrib/$1=$2: $TCMU_ERR"
	return 1
}

# dp_action NAME VALUE
dp_action()
{
	if tcmu_write "$DP_DEV/action/$1" "$2"; then
		return 0
	fi
	fail "action/$1=$2: $TCMU_ERR"
	return 1
}

# dp_stat NAME: one counter of attrib/stats (empty when absent).
dp_stat()
{
	local s line
	tcmu_read s "$DP_DEV/attrib/stats" || return 1
	while IFS= read -r line; do
		if [ "${line%% *}" == "$1" ]; then
			echo "${line#* }"
			return 0
		fi
	done <<< "$s"
	return 1
}

# dp_stat_above NAME N: true when counter NAME is above N (for polling).
dp_stat_above()
{
	local v
	v=$(dp_stat "$1") || return 1
	[ "$v" -gt "$2" ]
}

dp_show_stats()
{
	local s
	tcmu_read s "$DP_DEV/attrib/stats"
	tcmu_log "stats: $(printf '%s' "$s" | tr '\n' ' ')"
}

# ---------------------------------------------------------------------------
# The handler

# dp_handler_start [OPT...]: start tcmu-handler on /dev/$DP_UIO with OPTs
# and wait until it has mapped the ring.  Its stderr goes to
# $DP_WORK/handler.log, its counters to $DP_WORK/handler.status.  The
# handler keeps the data in RAM, so a new handler starts with a blank
# disk, unless DP_HANDLER_FILE names a backing file.
# shellcheck disable=SC2120 # the tests pass the options
dp_handler_start()
{
	local pidfile=$DP_WORK/handler.pid store

	if [ -n "$DP_HANDLER_PID" ] && kill -0 "$DP_HANDLER_PID" 2>/dev/null; then
		fail "dp_handler_start: handler $DP_HANDLER_PID still running"
		return 1
	fi
	DP_HANDLER_OPTS=("$@")
	DP_HANDLER_LOG=$DP_WORK/handler.log
	rm -f "$pidfile" "$DP_WORK/handler.status"
	echo "# --- handler ${*:-(plain)}" >> "$DP_HANDLER_LOG"
	store=()
	if [ -n "$DP_HANDLER_FILE" ]; then
		store=(--file "$DP_HANDLER_FILE" --size "$(tcmu_value "$DP_DEV/attrib/dev_size")")
	fi
	"$DP_HANDLER_BIN" --uio "/dev/$DP_UIO" --pidfile "$pidfile" \
		--status "$DP_WORK/handler.status" "${store[@]}" "$@" \
		< /dev/null >> "$DP_HANDLER_LOG" 2>&1 &
	DP_HANDLER_PID=$!
	if ! tcmu_wait_for 10 test -s "$pidfile"; then
		fail "handler ${*:-(plain)} did not start"
		dp_handler_log 20
		dp_handler_kill
		return 1
	fi
	return 0
}

dp_handler_alive()
{
	[ -n "$DP_HANDLER_PID" ] && kill -0 "$DP_HANDLER_PID" 2>/dev/null
}

# dp_handler_wait_exit SECONDS: wait for the handler to exit by itself;
# DP_HANDLER_RC gets its exit status.  Returns 1 if it is still running.
dp_handler_wait_exit()
{
	DP_HANDLER_RC=
	[ -n "$DP_HANDLER_PID" ] || return 0
	tcmu_wait_for "$1" dp_handler_gone || return 1
	wait "$DP_HANDLER_PID" 2>/dev/null
	DP_HANDLER_RC=$?
	DP_HANDLER_PID=
	return 0
}

dp_handler_gone()
{
	! kill -0 "$DP_HANDLER_PID" 2>/dev/null
}

# Stop the handler (SIGTERM, then SIGKILL) and reap it.
dp_handler_stop()
{
	[ -n "$DP_HANDLER_PID" ] || return 0
	kill -TERM "$DP_HANDLER_PID" 2>/dev/null
	if ! dp_handler_wait_exit 5; then
		tcmu_log "handler $DP_HANDLER_PID ignored SIGTERM, killing it"
		dp_handler_kill
	fi
	return 0
}

dp_handler_kill()
{
	[ -n "$DP_HANDLER_PID" ] || return 0
	kill -KILL "$DP_HANDLER_PID" 2>/dev/null
	wait "$DP_HANDLER_PID" 2>/dev/null
	DP_HANDLER_PID=
}

# dp_handler_counter NAME: a counter from the handler's status file (the
# handler writes it on exit and on SIGUSR1).
dp_handler_counter()
{
	local line
	[ -r "$DP_WORK/handler.status" ] || return 1
	while IFS= read -r line; do
		if [ "${line%%=*}" == "$1" ]; then
			echo "${line#*=}"
			return 0
		fi
	done < "$DP_WORK/handler.status"
	return 1
}

# Ask a running handler for a fresh status file.
dp_handler_refresh_status()
{
	local f=$DP_WORK/handler.status
	dp_handler_alive || return 0
	rm -f "$f"
	kill -USR1 "$DP_HANDLER_PID" 2>/dev/null
	tcmu_wait_for 5 test -s "$f"
}

# dp_handler_log LINES: show the end of the handler's log (for failure
# reports).
dp_handler_log()
{
	[ -s "$DP_HANDLER_LOG" ] || return 0
	tail -n "$1" "$DP_HANDLER_LOG" | sed 's/^/#   handler: /'
}

# ---------------------------------------------------------------------------
# tcm_loop

# dp_export: a tcm_loop target port with a nexus and LUN 0 pointing at the
# device; waits for the SCSI disk and sets DP_DISK, DP_BLK and DP_ADDR.
dp_export()
{
	local b i

	DP_WWN=$(printf 'naa.50014050dd%06x' "$DP_HBA")
	DP_TPG=$DP_LOOPBACK/$DP_WWN/tpgt_1
	DP_LUN_LINK=$DP_TPG/lun/lun_0/dp_link
	if ! mkdir -p "$DP_TPG/lun/lun_0"; then
		fail "cannot create the tcm_loop port $DP_TPG"
		return 1
	fi
	if ! tcmu_write "$DP_TPG/nexus" "$(printf 'naa.50014050ee%06x' "$DP_HBA")"; then
		fail "tcm_loop nexus: $TCMU_ERR"
		return 1
	fi
	if ! ln -s "$DP_DEV" "$DP_LUN_LINK"; then
		fail "cannot link the device into $DP_TPG/lun/lun_0"
		return 1
	fi
	tcmu_read DP_ADDR "$DP_TPG/address"
	DP_ADDR=${DP_ADDR%$'\n'}:0
	DP_DISK=
	for ((i = 0; i < 150; i++)); do
		for b in /sys/class/scsi_device/"$DP_ADDR"/device/block/*; do
			[ -e "$b" ] && DP_BLK=${b##*/}
		done
		[ -n "$DP_BLK" ] && [ -b "/dev/$DP_BLK" ] && break
		sleep 0.2
	done
	if [ -z "$DP_BLK" ] || [ ! -b "/dev/$DP_BLK" ]; then
		fail "no SCSI disk showed up for $DP_ADDR"
		DP_BLK=
		dp_handler_log 20
		return 1
	fi
	DP_DISK=/dev/$DP_BLK
	tcmu_log "exported through tcm_loop as $DP_DISK ($DP_ADDR, $(cat "/sys/block/$DP_BLK/size") sectors)"
}

# Remove the LUN, the nexus and the port.
dp_unexport()
{
	local rc=0
	[ -n "$DP_TPG" ] || return 0
	if [ -L "$DP_LUN_LINK" ]; then
		rm "$DP_LUN_LINK" || rc=1
	fi
	[ -d "$DP_TPG/lun/lun_0" ] && { rmdir "$DP_TPG/lun/lun_0" || rc=1; }
	[ -d "$DP_TPG" ] && { rmdir "$DP_TPG" || rc=1; }
	[ -d "$DP_LOOPBACK/$DP_WWN" ] && { rmdir "$DP_LOOPBACK/$DP_WWN" || rc=1; }
	if [ -n "$DP_BLK" ]; then
		tcmu_wait_for 10 test ! -e "/sys/block/$DP_BLK" || rc=1
	fi
	[ $rc -eq 0 ] && DP_TPG=
	DP_DISK=
	DP_BLK=
	return $rc
}

# ---------------------------------------------------------------------------
# Background jobs (fio, sg_raw ...) that teardown must not leave behind

# dp_bg_add PID
dp_bg_add()
{
	DP_BG_PIDS+=("$1")
}

# dp_tree PID: PID and all its descendants, children first.
dp_tree()
{
	local c
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		dp_tree "$c"
	done
	echo "$1"
}

# dp_kill_tree SIGNAL PID: signal a background job and what it started
# (a subshell running fio, say).
dp_kill_tree()
{
	local p
	for p in $(dp_tree "$2"); do
		kill "-$1" "$p" 2>/dev/null
	done
}

# dp_bg_signal SIGNAL: signal every background job (and its children).
dp_bg_signal()
{
	local p
	for p in "${DP_BG_PIDS[@]}"; do
		dp_kill_tree "$1" "$p"
	done
}

# dp_bg_reap SECONDS: wait for every background job to be gone, SIGKILL
# what is left after SECONDS.  A job stuck in the kernel (an SG_IO the
# kernel still holds, say) cannot be reaped: it is left behind and the
# function returns 1.
dp_bg_reap()
{
	local p rc=0
	for p in "${DP_BG_PIDS[@]}"; do
		if ! tcmu_wait_for "$1" dp_pid_gone "$p"; then
			rc=1
			dp_kill_tree KILL "$p"
			tcmu_wait_for 5 dp_pid_gone "$p" || {
				tcmu_log "background job $p is stuck, left behind"
				continue
			}
		fi
		wait "$p" 2>/dev/null
	done
	DP_BG_PIDS=()
	return $rc
}

# dp_bg_wait SECONDS: let the background jobs finish by themselves; those
# still there after SECONDS are killed.  Returns 1 if any had to be.
dp_bg_wait()
{
	local p rc=0
	for p in "${DP_BG_PIDS[@]}"; do
		if ! tcmu_wait_for "$1" dp_pid_gone "$p"; then
			rc=1
			dp_kill_tree TERM "$p"
		fi
	done
	dp_bg_reap 5 || rc=1
	return $rc
}

dp_pid_gone()
{
	! kill -0 "$1" 2>/dev/null
}

# ---------------------------------------------------------------------------
# Teardown

# dp_teardown [quiet]: remove everything in reverse order.  Without
# "quiet" every step is a check; from the EXIT trap it just cleans up.
dp_teardown()
{
	local quiet=${1:-} err=() v

	DP_TORN_DOWN=1
	# Background jobs waiting for commands the kernel holds only go
	# away once the ring is reset below: signal now, reap after.
	dp_bg_signal TERM
	if [ -n "$DP_DEV" ] && [ -d "$DP_DEV" ] && [ -n "$DP_UIO" ] && [ -n "$DP_TPG" ]; then
		# A file system still mounted writes back, and the disk going
		# away with the LUN may still send commands: those held by a
		# misbehaving (or gone) handler are flushed, and a plain
		# handler answers the rest.
		if [ ${#DP_HANDLER_OPTS[@]} -ne 0 ] || ! dp_handler_alive; then
			dp_handler_stop
			[ "$(tcmu_value "$DP_DEV/action/block_dev")" == blocked ] &&
				tcmu_write "$DP_DEV/action/block_dev" 0
			tcmu_write "$DP_DEV/action/reset_ring" 2 ||
				err+=("reset_ring: $TCMU_ERR")
			# shellcheck disable=SC2119 # a plain handler: no options
			dp_handler_start || err+=("plain handler for the teardown")
		fi
	fi
	dp_bg_reap 10
	for v in "${DP_MOUNTS[@]}"; do
		if grep -qs " $v " /proc/mounts; then
			umount "$v" || umount -l "$v" || err+=("umount $v")
		fi
	done
	DP_MOUNTS=()
	dp_unexport || err+=("tcm_loop LUN/port removal")
	dp_handler_stop
	if [ -n "$DP_DEV" ] && [ -d "$DP_DEV" ]; then
		rmdir "$DP_DEV" || err+=("rmdir ${DP_DEV#"$TARGET_CORE"/}")
	fi
	if [ -n "$DP_HBA" ]; then
		v=$(tcmu_hba_path "$DP_HBA")
		[ -d "$v" ] && { rmdir "$v" || err+=("rmdir ${v#"$TARGET_CORE"/}"); }
	fi
	if [ -n "$DP_UIO" ]; then
		tcmu_wait_for 5 test ! -e "/sys/class/uio/$DP_UIO" ||
			err+=("uio device $DP_UIO still registered")
	fi
	v=$(tcmu_all_uio)
	[ -z "$v" ] || err+=("tcm-user uio devices left: $v")
	if [ -n "$DP_WWN" ] && [ -e "$DP_LOOPBACK/$DP_WWN" ]; then
		err+=("$DP_LOOPBACK/$DP_WWN left")
	fi
	DP_HANDLER_OPTS=()
	DP_DEV=
	DP_UIO=
	DP_WWN=
	DP_HBA=
	[ "$quiet" == quiet ] && return 0
	if [ ${#err[@]} -eq 0 ]; then
		pass "teardown: LUN, handler, device and uio node all gone"
	else
		fail "teardown: $(IFS=';'; echo "${err[*]}")"
	fi
	# No handler here writes anything the kernel should reject.
	v=$(dp_kmsg_since "$DP_KMSG_MARK" | grep 'ring broken')
	check_eq "kernel log: no ring marked broken so far" "" "$v"
	tcmu_log "test took $((SECONDS - DP_T0))s"
}

# ---------------------------------------------------------------------------
# SCSI pass-through with sg_raw (no retries by sd, status and sense seen
# as the initiator gets them)

# dp_sg VAR TIMEOUT [SG_RAW-OPTION...] -- CDB-BYTE...: run sg_raw -v on
# $DP_DISK; VAR gets its output, DP_SG_RC its exit status and DP_SG_SECS
# the time it took.  Parsed with dp_sg_status / dp_sg_sense.
dp_sg()
{
	local -n _dp_out=$1
	local tmo=$2 t0 opts=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		opts+=("$1")
		shift
	done
	shift
	t0=$(dp_now)
	_dp_out=$(timeout -k 5 $((tmo + 30)) sg_raw -v -t "$tmo" "${opts[@]}" \
		"$DP_DISK" "$@" 2>&1)
	DP_SG_RC=$?
	DP_SG_SECS=$(dp_elapsed "$t0")
}

# dp_sg_status OUTPUT: the SCSI status sg_raw printed, in lower case
# ("good", "check condition", "busy", "task set full", ...), or
# "no status" when sg_raw did not get as far as sending the command.
dp_sg_status()
{
	local s
	s=$(printf '%s\n' "$1" | sed -n 's/^[[:space:]]*SCSI Status:[[:space:]]*//p' | head -n 1)
	if [ -z "$s" ]; then
		echo "no status"
	else
		printf '%s\n' "$s" | tr '[:upper:]' '[:lower:]' | sed 's/[[:space:]]*$//'
	fi
}

# dp_sg_show OUTPUT: the first lines of an sg_raw output, for a failure.
dp_sg_show()
{
	printf '%s\n' "$1" | grep -v '^ [0-9a-f]\{2,\} ' | head -n "${2:-8}" | sed 's/^/#   sg_raw: /'
}

# dp_sg_sense OUTPUT: "KEY/ASC/ASCQ" in hex (e.g. 3/11/00) taken from the
# raw sense bytes sg_raw -v prints; empty when there are none.
dp_sg_sense()
{
	printf '%s\n' "$1" | awk '
		/Raw sense data/ { on = 1; next }
		on && /^[[:space:]]+([0-9a-f][0-9a-f][[:space:]]*)+$/ {
			for (i = 1; i <= NF; i++)
				b[n++] = tolower($i)
			next
		}
		{ on = 0 }
		END {
			if (n < 4)
				exit
			if (b[0] == "70" || b[0] == "71") {
				if (n >= 14)
					printf "%s/%s/%s\n", substr(b[2], 2, 1), b[12], b[13]
			} else if (b[0] == "72" || b[0] == "73") {
				printf "%s/%s/%s\n", substr(b[1], 2, 1), b[2], b[3]
			}
		}'
}

# dp_sg_ua VAR TIMEOUT ... -- CDB...: like dp_sg, but a UNIT ATTENTION
# (left over from a reset or a LUN change) is consumed and the command
# sent again, up to three times.
dp_sg_ua()
{
	local -n _dp_ua_out=$1
	local i
	for ((i = 0; i < 3; i++)); do
		dp_sg _dp_ua_out "${@:2}"
		[[ "$(dp_sg_sense "$_dp_ua_out")" == 6/* ]] || return 0
	done
}

# Commands the SCSI midlayer has sent to the LUN so far (each retry counts).
dp_iorequests()
{
	local v
	tcmu_read v "/sys/class/scsi_device/$DP_ADDR/device/iorequest_cnt" || return 1
	echo $((v))
}

# Commands of the LUN that timed out in the SCSI midlayer so far.
dp_iotimeouts()
{
	local v
	tcmu_read v "/sys/class/scsi_device/$DP_ADDR/device/iotmo_cnt" || return 1
	echo $((v))
}

# dp_cdb10 VAR OPCODE LBA BLOCKS: VAR (an array) gets the bytes, in hex, of
# a 10-byte READ/WRITE-style CDB.
dp_cdb10()
{
	local -n _dp_cdb=$1
	read -ra _dp_cdb <<< "$(printf '%02x 00 %02x %02x %02x %02x 00 %02x %02x 00' \
		$(($2)) $(($3 >> 24 & 255)) $(($3 >> 16 & 255)) $(($3 >> 8 & 255)) \
		$(($3 & 255)) $(($4 >> 8 & 255)) $(($4 & 255)))"
}

# ---------------------------------------------------------------------------
# fio

# dp_fio NAME [FIO-OPTION...]: run one fio job against $DP_DISK with
# direct I/O through libaio; output in $DP_WORK/NAME.fio, status in
# DP_FIO_RC.  The caller supplies rw, bs, iodepth, size and verify options.
dp_fio()
{
	local name=$1
	shift
	(cd "$DP_WORK" && timeout -k 10 "${DP_FIO_TIMEOUT:-120}" fio \
		--name="$name" --filename="$DP_DISK" --ioengine=libaio \
		--direct=1 --verify_state_save=0 --output-format=normal "$@") \
		> "$DP_WORK/$name.fio" 2>&1
	DP_FIO_RC=$?
	return $DP_FIO_RC
}

# dp_fio_verify_global: the [global] section of a job file whose jobs
# write $DP_DISK and verify every block with crc32c, one job at a time.
dp_fio_verify_global()
{
	printf '%s\n' "[global]" "filename=$DP_DISK" "ioengine=libaio" \
		"direct=1" "verify=crc32c" "do_verify=1" "verify_fatal=1" \
		"verify_state_save=0" "stonewall"
}

# dp_fio_jobs NAME JOBFILE-TEXT: run a fio job file (the text, with
# $DP_DISK already filled in by the caller) from the scratch directory.
dp_fio_jobs()
{
	printf '%s\n' "$2" > "$DP_WORK/$1.job"
	(cd "$DP_WORK" && timeout -k 10 "${DP_FIO_TIMEOUT:-120}" \
		fio --output-format=normal "$1.job") > "$DP_WORK/$1.fio" 2>&1
	DP_FIO_RC=$?
	return $DP_FIO_RC
}

# dp_fio_errjobs NAME: the number of fio jobs that reported an error.
dp_fio_errjobs()
{
	grep -Ec ': err=[[:space:]]*[1-9]' "$DP_WORK/$1.fio"
}

# dp_fio_okjobs NAME: the number of fio jobs that ended with err=0.
dp_fio_okjobs()
{
	grep -Ec ': err=[[:space:]]*0[:[:space:]]' "$DP_WORK/$1.fio"
}

# Show the interesting part of a fio log (errors, verify failures).
dp_fio_log()
{
	grep -Ei 'err|verify|fail|bad|crc|timed out' "$DP_WORK/$1.fio" |
		head -n "${2:-15}" | sed 's/^/#   fio: /'
}

# dp_kmsg_since MARK: kernel log lines after a marker written with
# dp_kmsg_mark.
dp_kmsg_mark()
{
	echo "tcmu-dp: $1" > /dev/kmsg 2>/dev/null
}

dp_kmsg_since()
{
	dmesg 2>/dev/null | awk -v m="tcmu-dp: $1" 'found { print } index($0, m) { found = 1 }'
}
