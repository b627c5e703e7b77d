#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 600
#
# Netlink replies.  At enable a device's nl_reply_supported, unless
# negative, becomes the value of the daemon's last SET_FEATURES
# SUPP_KERN_CMD_REPLY (as upstream 6.1: a later SET_FEATURES does not
# change it, but a write to the attribute does).  While both are above 0,
# enable, writes to attrib/dev_config, dev_size and emulate_write_cache
# and rmdir wait for the matching *_DONE from tcmu_nl_listener:
#
#   success          the write succeeds, only after the reply came
#   -errno           the write fails with that errno and changes nothing
#                    (enable: device stays disabled, no uio node; RECONFIG:
#                    value not applied); rmdir always succeeds; a positive
#                    status counts as EINVAL
#   no reply         the write fails with ETIMEDOUT after netlink_timeout
#                    seconds (rmdir still succeeds), nothing is left pending
#   wrong replies    a *_DONE for another device id (ENODEV), the wrong
#                    *_DONE (EINVAL), one without CMD_STATUS or DEVICE_ID
#                    (EINVAL), an event command (EOPNOTSUPP) are refused and
#                    leave the waiter waiting for the right one
#   fatal signal     ends the wait at once, nothing left pending; a second
#                    writer on the same device gets EBUSY at once or, if
#                    it queues behind the first, can be killed too
#   block_netlink    reads "unblocked" / "blocked", takes 0 or 1 (kstrtou8);
#                    while 1 a write that would wait fails at once with
#                    EAGAIN and sends no event (rmdir still succeeds);
#                    writes that do not wait are not affected
#   reset_netlink    takes only 1: succeeds when nothing is pending; with
#                    requests pending it fails them all with EINTR while
#                    netlink is blocked, and is refused (EBUSY) otherwise
#   CAP_NET_ADMIN    is what SET_FEATURES and *_DONE need (EPERM without);
#                    subscribing needs nothing
# Numbers out of range are EINVAL here where upstream says ERANGE.
#
# The module parameters and the daemon flag are global: the EXIT trap
# (lib_nl.sh) puts them back and fails any waiter whatever happens.

# shellcheck source=lib_nl.sh
. "$(dirname "$0")/lib_nl.sh"

NL_ELAPSED=0
BG_PID=

# ---------------------------------------------------------------------------
# Checks

# check_reply WHAT N CMD STATUS ACK: the listener answered event N so.
check_reply()
{
	local v
	nl_line "$1" reply "$2" || return 1
	nl_field v "$NL_LINE" cmd
	check_eq "$1: reply command" "$3" "$v"
	nl_field v "$NL_LINE" status
	check_eq "$1: reply status" "$4" "$v"
	nl_field v "$NL_LINE" ack
	check_eq "$1: the kernel's answer to the reply" "$5" "$v"
}

# ---------------------------------------------------------------------------
# Timing and writes

# nl_cs VAR: VAR gets the uptime in hundredths of a second.
nl_cs()
{
	local -n _nl_cs=$1
	local up
	read -r up _ < /proc/uptime
	_nl_cs=$((10#${up/./}))
}

# pid_alive PID: PID exists and is not a zombie (bash reaps the children
# it does not wait for only now and then).
pid_alive()
{
	local st
	{ read -r st < "/proc/$1/stat"; } 2> /dev/null || return 1
	st=${st##*) }
	[ "${st:0:1}" != Z ]
}

# gone_within PID SECONDS: true when PID is gone within SECONDS of wall
# clock time (tcmu_wait_for counts tries, which a loaded host stretches).
gone_within()
{
	local t0 now
	nl_cs t0
	while pid_alive "$1"; do
		nl_cs now
		[ $((now - t0)) -lt $(($2 * 100)) ] || return 1
		nl_sleep 0.1
	done
	return 0
}

# pid_show PID: where a process that should be gone is.
pid_show()
{
	local st wchan
	{ read -r st < "/proc/$1/stat"; } 2> /dev/null
	{ read -r wchan < "/proc/$1/wchan"; } 2> /dev/null
	tcmu_log "process $1: ${st:-gone}; wchan ${wchan:--}"
}

secs()
{
	printf '%d.%02d' $(($1 / 100)) $(($1 % 100))
}

# check_write DESC FILE VALUE EXPECT MIN-CS MAX-CS: write VALUE; EXPECT is
# "ok" or the error text; the write must take MIN..MAX hundredths of a second.
check_write()
{
	local t0 t1 got=ok
	nl_cs t0
	tcmu_write "$2" "$3" || got=$TCMU_ERR
	nl_cs t1
	NL_ELAPSED=$((t1 - t0))
	check_eq "$1: result" "$4" "$got"
	if [ "$NL_ELAPSED" -ge "$5" ] && [ "$NL_ELAPSED" -le "$6" ]; then
		pass "$1: took $(secs "$NL_ELAPSED") s"
	else
		fail "$1: took $(secs "$NL_ELAPSED") s, expected $(secs "$5")..$(secs "$6") s"
	fi
}

# check_rmdir DESC DEVPATH MIN-CS MAX-CS: rmdir succeeds in that time and
# the device's uio node is gone.
check_rmdir()
{
	local t0 t1 rc=0 n
	nl_cs t0
	rmdir "$2" || rc=$?
	nl_cs t1
	NL_ELAPSED=$((t1 - t0))
	check_eq "$1: rmdir succeeds" 0 "$rc"
	if [ "$NL_ELAPSED" -ge "$3" ] && [ "$NL_ELAPSED" -le "$4" ]; then
		pass "$1: took $(secs "$NL_ELAPSED") s"
	else
		fail "$1: took $(secs "$NL_ELAPSED") s, expected $(secs "$3")..$(secs "$4") s"
	fi
	nl_uio_count n "^tcm-user/$HBA/${2##*/}(/|$)"
	check_eq "$1: uio node gone" 0 "$n"
}

# bg_write NAME FILE VALUE: the write in a background subshell (BG_PID);
# its result ("ok" or the error text) goes to $NL_WORK/NAME.res.
bg_write()
{
	local res=$NL_WORK/$1.res
	: > "$res"
	(
		if tcmu_write "$2" "$3"; then
			echo ok > "$res"
		else
			echo "$TCMU_ERR" > "$res"
		fi
	) &
	BG_PID=$!
	BG_PIDS+=("$BG_PID")
}

# bg_result VAR NAME PID SECONDS: VAR gets the result of the background
# write, or "still running" after SECONDS.
bg_result()
{
	local -n _bg_r=$1
	if ! gone_within "$3" "$4"; then
		_bg_r="still running"
		return 1
	fi
	wait "$3" 2>/dev/null
	nl_value _bg_r "$NL_WORK/$2.res"
	[ -n "$_bg_r" ] || _bg_r="no result"
}

# ---------------------------------------------------------------------------
# Devices

HBA=43
SMALL="dev_size=1048576,max_data_area_mb=4,cmd_ring_size_mb=1"
D=

# mk NAME [CONTROL]: create and configure user_$HBA/NAME (D), not enabled.
mk()
{
	D=$(tcmu_dev_path $HBA "$1")
	tcmu_mkdev $HBA "$1" || tcmu_fatal "cannot create user_$HBA/$1"
	tcmu_write "$D/control" "$SMALL${2:+,$2}" || tcmu_fatal "control of $1: $TCMU_ERR"
}


# check_disabled WHAT DEVPATH: enable reads 0 and there is no uio node.
check_disabled()
{
	local n
	check_reads "$1: enable reads 0" "$2/enable" 0
	nl_uio_count n "^tcm-user/$HBA/${2##*/}(/|$)"
	check_eq "$1: no uio node" 0 "$n"
}

# check_enabled WHAT DEVPATH: enable reads 1 and there is one uio node.
check_enabled()
{
	local n
	check_reads "$1: enable reads 1" "$2/enable" 1
	nl_uio_count n "^tcm-user/$HBA/${2##*/}(/|$)"
	check_eq "$1: one uio node" 1 "$n"
}

# check_unchanged WHAT BEFORE DEVPATH
check_unchanged()
{
	local now
	tcmu_snapshot now "$3"
	if [ "$2" == "$now" ]; then
		pass "$1: nothing changed"
	else
		fail "$1: the device changed:"
		tcmu_snapshot_diff "$2" "$now"
	fi
}

# ---------------------------------------------------------------------------

nl_init

TMO=2				# netlink_timeout where a timeout is the point
LONG=30				# netlink_timeout everywhere else
FAST=1000			# bound for a write that must not wait: well under LONG
# A loaded TCG guest has seen a 2 s timeout end after 1.88 s of
# /proc/uptime: the lower bound only has to show that the write waited.
TMO_MIN=$((TMO * 75))
TMO_MAX=$((TMO * 100 + 500))
DELAY=700			# ms the replying listener waits
before=
v=
id=
r=
r1=
r2=

set_tmo()
{
	tcmu_write "$PARAMS/netlink_timeout" "$1" || tcmu_fatal "netlink_timeout=$1: $TCMU_ERR"
}
set_tmo $TMO

# --- module parameters ---------------------------------------------------------

tcmu_log "--- parameters"
check_reads "netlink_timeout reads back" "$PARAMS/netlink_timeout" $TMO
for bad in 0 3601 -1 abc 1x ""; do
	[ -n "$bad" ] || bad=$'\n'
	check_write_err "netlink_timeout=$(tcmu_show "$bad") refused" "$PARAMS/netlink_timeout" "$bad"
done
check_write_ok "netlink_timeout=3600" "$PARAMS/netlink_timeout" 3600
check_reads "netlink_timeout=3600 reads back" "$PARAMS/netlink_timeout" 3600
check_write_ok "netlink_timeout=$LONG" "$PARAMS/netlink_timeout" $LONG
# block_netlink reads as upstream prints it and takes 0 or 1 the way
# kstrtou8 parses them; any other number, even one beyond u8, is EINVAL.
check_reads "block_netlink reads unblocked" "$PARAMS/block_netlink" unblocked
for bad in 2 -1 256 abc 1x y on true; do
	check_write_err "block_netlink=$bad refused" "$PARAMS/block_netlink" "$bad"
done
check_reads "block_netlink still unblocked" "$PARAMS/block_netlink" unblocked
check_write_ok "block_netlink=0x1" "$PARAMS/block_netlink" 0x1
check_reads "block_netlink reads blocked" "$PARAMS/block_netlink" blocked
check_write_ok "block_netlink=0 with a newline" "$PARAMS/block_netlink" $'0\n'
check_reads "block_netlink reads unblocked again" "$PARAMS/block_netlink" unblocked
# reset_netlink takes only 1; with nothing pending it succeeds whether
# netlink is blocked or not.
for bad in 0 2 -1 256 abc; do
	check_write_err "reset_netlink=$bad refused" "$PARAMS/reset_netlink" "$bad"
done
check_false "reset_netlink is write-only" readable "$PARAMS/reset_netlink"
check_write_ok "reset_netlink=1, not blocked, nothing pending" "$PARAMS/reset_netlink" 1
check_write_ok "reset_netlink=0x1, not blocked, nothing pending" "$PARAMS/reset_netlink" 0x1
# tcmu-runner's start-up sequence.
check_write_ok "block_netlink=1" "$PARAMS/block_netlink" 1
check_write_ok "reset_netlink=1 while blocked, nothing pending" "$PARAMS/reset_netlink" 1
check_write_ok "block_netlink=0" "$PARAMS/block_netlink" 0
check_reads "block_netlink reads unblocked after the start-up sequence" "$PARAMS/block_netlink" unblocked

# --- SET_FEATURES and nl_reply_supported --------------------------------------

# At enable a device's nl_reply_supported, unless negative, becomes the
# value of the daemon's last SET_FEATURES; a request waits for its *_DONE
# only while both that value and the device's are above 0.  The listener
# answers every event: the kernel's ack tells whether it waited (0) or
# not (ENODEV, nothing pending).
tcmu_log "--- SET_FEATURES"
# check_waited WHAT N CMD yes|no: event N was (not) waited for.
check_waited()
{
	if [ "$4" == yes ]; then
		check_reply "$1: waited" "$2" "$3" 0 0
	else
		check_reply "$1: did not wait" "$2" "$3" 0 ENODEV
	fi
}
nl_start feat --reply all=0 || tcmu_finish
mk feat0
check_write_ok "nl_reply_supported=5 before enable" "$D/attrib/nl_reply_supported" 5
check_write "features 0: enable" "$D/enable" 1 ok 0 $FAST
check_reads "features 0: nl_reply_supported became 0 at enable" "$D/attrib/nl_reply_supported" 0
check_waited "features 0: enable" 1 ADDED_DEVICE_DONE no
nl_features 1
check_write "features 1 after enable: dev_size" "$D/attrib/dev_size" 2097152 ok 0 $FAST
check_waited "features 1 after enable: dev_size" 2 RECONFIG_DEVICE_DONE no
check_reads "features 1 after enable: nl_reply_supported still 0" "$D/attrib/nl_reply_supported" 0
check_write_ok "nl_reply_supported=1 once enabled" "$D/attrib/nl_reply_supported" 1
check_write "nl_reply_supported=1, features 1: dev_size" "$D/attrib/dev_size" 4194304 ok 0 1000
check_waited "nl_reply_supported=1, features 1: dev_size" 3 RECONFIG_DEVICE_DONE yes
check_reads "dev_size applied" "$D/attrib/dev_size" 4194304
nl_features 0
check_write "nl_reply_supported=1, features 0: dev_size" "$D/attrib/dev_size" 2097152 ok 0 $FAST
check_waited "nl_reply_supported=1, features 0: dev_size" 4 RECONFIG_DEVICE_DONE no
nl_features 200
check_write "nl_reply_supported=1, features 200: dev_size" "$D/attrib/dev_size" 4194304 ok 0 1000
check_waited "nl_reply_supported=1, features 200: dev_size" 5 RECONFIG_DEVICE_DONE yes
check_rmdir "nl_reply_supported=1, features 200: rmdir" "$D" 0 1000
check_waited "nl_reply_supported=1, features 200: rmdir" 6 REMOVED_DEVICE_DONE yes
mk feat200
check_write "features 200: enable" "$D/enable" 1 ok 0 1000
check_reads "features 200: nl_reply_supported became 200 at enable" "$D/attrib/nl_reply_supported" 200
check_waited "features 200: enable" 7 ADDED_DEVICE_DONE yes
check_write_ok "nl_reply_supported=0 once enabled" "$D/attrib/nl_reply_supported" 0
check_write "nl_reply_supported=0, features 200: dev_size" "$D/attrib/dev_size" 2097152 ok 0 $FAST
check_waited "nl_reply_supported=0, features 200: dev_size" 8 RECONFIG_DEVICE_DONE no
check_rmdir "nl_reply_supported=0, features 200: rmdir" "$D" 0 $FAST
check_waited "nl_reply_supported=0, features 200: rmdir" 9 REMOVED_DEVICE_DONE no
# A negative value is kept and never waits, whatever the daemon said.
nl_features 1
mk never nl_reply_supported=-1
check_write "nl_reply_supported=-1: enable" "$D/enable" 1 ok 0 $FAST
check_reads "nl_reply_supported=-1 kept at enable" "$D/attrib/nl_reply_supported" -1
check_waited "nl_reply_supported=-1: enable" 10 ADDED_DEVICE_DONE no
check_write "nl_reply_supported=-1: dev_size" "$D/attrib/dev_size" 2097152 ok 0 $FAST
check_waited "nl_reply_supported=-1: dev_size" 11 RECONFIG_DEVICE_DONE no
check_rmdir "nl_reply_supported=-1: rmdir" "$D" 0 $FAST
check_waited "nl_reply_supported=-1: rmdir" 12 REMOVED_DEVICE_DONE no
check_eq "12 events, no stray line" 24 "$(nl_count "$NL_OUT" '^(event|reply) ')"
nl_stop

# Features 1 and nobody answers: enable fails after netlink_timeout.
nl_start silent1 --features 1 || tcmu_finish
nl_find v "$NL_OUT" '^ack cmd=SET_FEATURES '
check_eq "listener's SET_FEATURES 1 acked" "ack cmd=SET_FEATURES ack=0" "$v"
mk feat1
set_tmo $TMO
check_write "features 1, no reply: enable times out" "$D/enable" 1 "Connection timed out" $TMO_MIN $TMO_MAX
set_tmo $LONG
check_disabled "after the timed-out enable" "$D"
nl_line "timed-out enable" event 1 && nl_field v "$NL_LINE" uio
check_eq "the uio node existed while the kernel waited" "$(tcmu_uio_name $HBA feat1)" "$v"
nl_field FEAT1_ID "$NL_LINE" device_id
nl_do v "$NL_BIN" reply added "$FEAT1_ID" 0
check_eq "a late ADDED_DEVICE_DONE is refused" "ack cmd=ADDED_DEVICE_DONE ack=ENODEV" "$v"
nl_stop

# Features still 1 but nobody subscribed (the daemon is gone): nobody can
# answer, so nothing waits (upstream waits for ever at enable).
mk nosub
check_write "features 1, no subscriber: enable does not wait" "$D/enable" 1 ok 0 $FAST
check_enabled "after enable without a subscriber" "$D"
check_write "features 1, no subscriber: dev_size fails at once" "$D/attrib/dev_size" 4194304 \
	"No such process" 0 $FAST
check_reads "features 1, no subscriber: dev_size unchanged" "$D/attrib/dev_size" 1048576
check_rmdir "features 1, no subscriber: rmdir does not wait" "$D" 0 $FAST

# --- replies with success --------------------------------------------------------

tcmu_log "--- success replies"
nl_start ok --reply all=0 --delay $DELAY || tcmu_finish
mk okdev
check_write "enable waits for ADDED_DEVICE_DONE 0" "$D/enable" 1 ok $((DELAY / 10)) 1000
check_enabled "after the successful enable" "$D"
check_reply "enable" 1 ADDED_DEVICE_DONE 0 0
nl_line "enable" event 1 && nl_field v "$NL_LINE" uio
check_eq "ADDED_DEVICE: uio node registered before the event" "$(tcmu_uio_name $HBA okdev)" "$v"
check_reads "nl_reply_supported after enable" "$D/attrib/nl_reply_supported" 1
check_write "dev_size waits for RECONFIG_DEVICE_DONE 0" "$D/attrib/dev_size" 4194304 ok $((DELAY / 10)) 1000
check_reads "dev_size applied" "$D/attrib/dev_size" 4194304
check_reply "dev_size" 2 RECONFIG_DEVICE_DONE 0 0
check_write "dev_config waits" "$D/attrib/dev_config" newcfg ok $((DELAY / 10)) 1000
check_reads "dev_config applied" "$D/attrib/dev_config" newcfg
nl_uio_count n "^tcm-user/$HBA/okdev/newcfg$"
check_eq "uio node renamed" 1 "$n"
check_write "emulate_write_cache waits" "$D/attrib/emulate_write_cache" 1 ok $((DELAY / 10)) 1000
check_reads "emulate_write_cache applied" "$D/attrib/emulate_write_cache" 1
check_write "attrib writes without an event do not wait" "$D/attrib/qfull_time_out" 5 ok 0 $FAST
check_rmdir "rmdir waits for REMOVED_DEVICE_DONE" "$D" $((DELAY / 10)) 1000
check_reply "rmdir" 5 REMOVED_DEVICE_DONE 0 0
nl_line "rmdir" event 5 && nl_field v "$NL_LINE" uio
check_eq "REMOVED_DEVICE: uio node still there while the kernel waits" "$(tcmu_uio_name $HBA okdev newcfg)" "$v"
nl_stop

# --- replies with an error ---------------------------------------------------------

tcmu_log "--- error replies"
nl_start err --reply added=-5 --reply reconfig=-5 --reply removed=-5 || tcmu_finish
mk errdev
check_write "ADDED_DEVICE_DONE -EIO: enable fails" "$D/enable" 1 "Input/output error" 0 1000
check_disabled "after the refused enable" "$D"
check_reply "refused enable" 1 ADDED_DEVICE_DONE -5 0
nl_stop
nl_start err2 --reply added=0 --reply reconfig=-5 --reply removed=-5 || tcmu_finish
check_write "enable again, with success" "$D/enable" 1 ok 0 1000
check_enabled "after enabling again" "$D"
tcmu_snapshot before "$D"
check_write "RECONFIG_DEVICE_DONE -EIO: dev_size fails" "$D/attrib/dev_size" 8388608 "Input/output error" 0 1000
check_write "RECONFIG_DEVICE_DONE -EIO: dev_config fails" "$D/attrib/dev_config" refused "Input/output error" 0 1000
check_write "RECONFIG_DEVICE_DONE -EIO: emulate_write_cache fails" "$D/attrib/emulate_write_cache" 1 "Input/output error" 0 1000
check_unchanged "after three refused RECONFIGs" "$before" "$D"
nl_uio_count n "^tcm-user/$HBA/errdev$"
check_eq "uio node keeps its name" 1 "$n"
check_reply "refused dev_size" 2 RECONFIG_DEVICE_DONE -5 0
check_rmdir "REMOVED_DEVICE_DONE -EIO: rmdir still succeeds" "$D" 0 1000
check_reply "refused rmdir" 5 REMOVED_DEVICE_DONE -5 0
nl_stop

# Status per event: any negative errno comes back, a positive one is EINVAL.
nl_start nth --reply all=0 --nth 2=-28 --nth 3=5 --nth 4=-1 || tcmu_finish
mk nthdev
check_write "event 1 (enable) gets 0" "$D/enable" 1 ok 0 1000
tcmu_snapshot before "$D"
check_write "event 2 gets -ENOSPC" "$D/attrib/dev_size" 8388608 "No space left on device" 0 1000
check_write "event 3 gets 5 (not an errno)" "$D/attrib/dev_size" 8388608 "Invalid argument" 0 1000
check_write "event 4 gets -EPERM" "$D/attrib/dev_size" 8388608 "Operation not permitted" 0 1000
check_unchanged "after three refused dev_size writes" "$before" "$D"
check_write "event 5 gets 0" "$D/attrib/dev_size" 8388608 ok 0 1000
check_reads "dev_size applied by event 5" "$D/attrib/dev_size" 8388608
check_rmdir "rmdir" "$D" 0 1000
nl_stop

# --- no reply at all -------------------------------------------------------------------

tcmu_log "--- no reply"
nl_start quiet --reply added=0 || tcmu_finish
mk quietdev
check_write "enable with success" "$D/enable" 1 ok 0 1000
set_tmo $TMO
tcmu_snapshot before "$D"
check_write "no reply: dev_size times out" "$D/attrib/dev_size" 8388608 "Connection timed out" $TMO_MIN $TMO_MAX
check_write "no reply: dev_config times out" "$D/attrib/dev_config" late "Connection timed out" $TMO_MIN $TMO_MAX
check_write "no reply: emulate_write_cache times out" "$D/attrib/emulate_write_cache" 1 "Connection timed out" $TMO_MIN $TMO_MAX
check_unchanged "after three timed-out RECONFIGs" "$before" "$D"
check_rmdir "no reply: rmdir succeeds after the timeout" "$D" $TMO_MIN $TMO_MAX
set_tmo $LONG
check_eq "the listener saw 5 events" 5 "$(nl_count "$NL_OUT" '^event ')"
nl_stop

# --- wrong replies ----------------------------------------------------------------------

tcmu_log "--- wrong replies"
# Each answer is preceded by three that must be refused; they carry
# -ENOTTY, so one wrongly taken would fail the write with ENOTTY.
nl_start decoys --reply all=0 --decoys || tcmu_finish
mk decoydev
check_write "enable after decoys" "$D/enable" 1 ok 0 1000
check_write "dev_size after decoys" "$D/attrib/dev_size" 2097152 ok 0 1000
check_reads "dev_size applied" "$D/attrib/dev_size" 2097152
check_rmdir "rmdir after decoys" "$D" 0 1000
n=0
for cmd in ADDED_DEVICE_DONE RECONFIG_DEVICE_DONE REMOVED_DEVICE_DONE; do
	n=$((n + 1))
	check_reply "event $n after decoys" $n $cmd 0 0
	for kv in wrong_id=ENODEV wrong_cmd=EINVAL no_status=EINVAL; do
		nl_find v "$NL_OUT" "^decoy n=$n kind=${kv%=*} "
		check_eq "event $n: decoy ${kv%=*} refused" "decoy n=$n kind=${kv%=*} ack=${kv#*=}" "$v"
	done
done
nl_stop

# By hand, while a writer waits: it keeps waiting through every wrong reply.
nl_start manual --reply added=0 || tcmu_finish
mk manualdev
check_write "enable" "$D/enable" 1 ok 0 1000
bg_write manual "$D/attrib/dev_size" 16777216
WPID=$BG_PID
if nl_line "waiting dev_size" event 2; then
	nl_field id "$NL_LINE" device_id
	for spec in "reconfig $((id + 1)) 0=RECONFIG_DEVICE_DONE ack=ENODEV" \
		"added $id 0=ADDED_DEVICE_DONE ack=EINVAL" \
		"removed $id 0=REMOVED_DEVICE_DONE ack=EINVAL" \
		"1 $id 0=ADDED_DEVICE ack=EOPNOTSUPP" \
		"2 $id 0=REMOVED_DEVICE ack=EOPNOTSUPP" \
		"3 $id 0=RECONFIG_DEVICE ack=EOPNOTSUPP" \
		"0 $id 0=UNSPEC ack=EOPNOTSUPP" \
		"8 $id 0=CMD8 ack=EOPNOTSUPP" \
		"reconfig $id 0 --no-status=RECONFIG_DEVICE_DONE ack=EINVAL" \
		"reconfig $id 0 --no-id=RECONFIG_DEVICE_DONE ack=EINVAL"; do
		read -r -a args <<< "${spec%%=*}"
		nl_do v "$NL_BIN" reply "${args[@]}"
		check_eq "wrong reply (${spec%%=*}) refused" "ack cmd=${spec#*=}" "$v"
	done
	check_true "the writer still waits after the wrong replies" pid_alive "$WPID"
	check_reads "dev_size not applied yet" "$D/attrib/dev_size" 1048576
	nl_do v "$NL_BIN" reply reconfig "$id" 0
	check_eq "the right reply is taken" "ack cmd=RECONFIG_DEVICE_DONE ack=0" "$v"
	bg_result r manual "$WPID" 10
	check_eq "the writer then succeeds" ok "$r"
	check_reads "dev_size applied" "$D/attrib/dev_size" 16777216
	nl_do v "$NL_BIN" reply reconfig "$id" 0
	check_eq "a second reply finds nothing pending" "ack cmd=RECONFIG_DEVICE_DONE ack=ENODEV" "$v"
	# The same by hand with an error status.
	bg_write manual2 "$D/attrib/dev_size" 33554432
	WPID=$BG_PID
	if nl_line "second waiting dev_size" event 3; then
		nl_do v "$NL_BIN" reply reconfig "$id" -5
		check_eq "the error reply is taken" "ack cmd=RECONFIG_DEVICE_DONE ack=0" "$v"
		bg_result r manual2 "$WPID" 10
		check_eq "the writer fails with EIO" "Input/output error" "$r"
		check_reads "dev_size kept" "$D/attrib/dev_size" 16777216
	fi
fi
nl_stop
check_rmdir "rmdir (listener gone: nothing to wait for)" "$D" 0 $FAST

# --- signals -----------------------------------------------------------------------------

tcmu_log "--- signals"
# netlink_timeout is $LONG s: only the signal can end these waits early.
# A test runs as a background job, where SIGINT is ignored (and stays
# ignored across exec): env --default-signal gives tee the default action.
# The signal goes out once the listener saw the event, so the writer is
# known to be waiting in the kernel.
SIG=INT
SIGWRAP=(env --default-signal=INT)
if ! "${SIGWRAP[@]}" true 2> /dev/null; then
	SIG=TERM
	SIGWRAP=()
fi

# sig_write WHAT SIGNAL FILE VALUE EVENT-N: tee writes VALUE to FILE; once
# event EVENT-N shows the wait, SIGNAL ends it within 5 s.
sig_write()
{
	local pid t0 t1 wrap=()
	[ "$2" == INT ] && wrap=("${SIGWRAP[@]}")
	"${wrap[@]}" tee "$3" < <(printf '%s' "$4") > /dev/null 2>&1 &
	pid=$!
	# Out of the job table: bash would report the kill on stderr.
	disown "$pid"
	BG_PIDS+=("$pid")
	nl_line "$1: waiting" event "$5" 20
	check_true "$1: the writer waits for the reply" pid_alive "$pid"
	nl_cs t0
	kill "-$2" "$pid"
	if gone_within "$pid" 5; then
		nl_cs t1
		pass "$1: SIG$2 ended the wait ($(secs $((t1 - t0))) s)"
	else
		fail "$1: the writer still waits 5 s after SIG$2"
		pid_show "$pid"
	fi
}

nl_start sig --nth 2=0 --nth 4=0 --nth 5=0 || tcmu_finish
mk sigdev
sig_write "enable" $SIG "$D/enable" 1 1
check_disabled "after the interrupted enable" "$D"
nl_line "interrupted enable" event 1 && nl_field id "$NL_LINE" device_id
nl_do v "$NL_BIN" reply added "$id" 0
check_eq "nothing pending after the interrupted enable" "ack cmd=ADDED_DEVICE_DONE ack=ENODEV" "$v"
check_write "enable afterwards (event 2 answered)" "$D/enable" 1 ok 0 1000
check_enabled "after the second enable" "$D"
tcmu_snapshot before "$D"
sig_write "dev_size" KILL "$D/attrib/dev_size" 8388608 3
check_unchanged "after the killed dev_size write" "$before" "$D"
check_write "dev_size afterwards (event 4 answered)" "$D/attrib/dev_size" 8388608 ok 0 1000
check_reads "dev_size applied" "$D/attrib/dev_size" 8388608
check_rmdir "rmdir (event 5 answered)" "$D" 0 1000
nl_stop

# A second writer on the same device while the first waits: it either
# fails at once with EBUSY (one request per device) or queues behind the
# first, and then a fatal signal must still end its wait.
nl_start second --reply added=0 || tcmu_finish
mk secdev
check_write "enable" "$D/enable" 1 ok 0 1000
bg_write secA "$D/attrib/dev_size" 8388608
PA=$BG_PID
if nl_line "first writer" event 2 20; then
	nl_field id "$NL_LINE" device_id
	bg_write secB "$D/attrib/emulate_write_cache" 1
	PB=$BG_PID
	# Out of the job table: bash would report the kill on stderr.
	disown "$PB"
	if gone_within "$PB" 2; then
		check_eq "second writer: EBUSY at once" "Device or resource busy" \
			"$(< "$NL_WORK/secB.res")"
	else
		tcmu_log "second writer queued behind the first"
		kill -KILL "$PB"
		if gone_within "$PB" 5; then
			pass "second writer: SIGKILL ended its wait"
		else
			fail "second writer: still there 5 s after SIGKILL (blocked behind the first writer)"
			pid_show "$PB"
		fi
	fi
	check_true "first writer still waits" pid_alive "$PA"
	nl_do v "$NL_BIN" reply reconfig "$id" 0
	check_eq "reply to the first writer taken" "ack cmd=RECONFIG_DEVICE_DONE ack=0" "$v"
	bg_result r secA "$PA" 10
	check_eq "first writer succeeds" ok "$r"
	gone_within "$PB" 10
	check_reads "dev_size applied" "$D/attrib/dev_size" 8388608
	check_reads "emulate_write_cache not applied" "$D/attrib/emulate_write_cache" 0
fi
nl_stop
check_rmdir "rmdir" "$D" 0 $FAST

# --- block_netlink and reset_netlink -------------------------------------------------

tcmu_log "--- block_netlink / reset_netlink"
nl_start blk --reply all=0 || tcmu_finish
mk blkdev
check_write_ok "block_netlink=1" "$PARAMS/block_netlink" 1
check_write "blocked: enable fails at once" "$D/enable" 1 "Resource temporarily unavailable" 0 $FAST
check_disabled "after the blocked enable" "$D"
check_write_ok "block_netlink=0" "$PARAMS/block_netlink" 0
check_write "unblocked: enable" "$D/enable" 1 ok 0 1000
nl_line "enable after unblocking" event 1 && nl_field v "$NL_LINE" cmd
check_eq "the blocked enable sent no event" ADDED_DEVICE "$v"
check_write_ok "block_netlink=1" "$PARAMS/block_netlink" 1
tcmu_snapshot before "$D"
check_write "blocked: dev_size fails at once" "$D/attrib/dev_size" 8388608 "Resource temporarily unavailable" 0 $FAST
check_unchanged "after the blocked dev_size" "$before" "$D"
check_rmdir "blocked: rmdir still succeeds at once" "$D" 0 $FAST
check_write_ok "block_netlink=0" "$PARAMS/block_netlink" 0
mk blkfence
check_write "fence enable" "$D/enable" 1 ok 0 1000
nl_line "fence" event 2 && nl_field v "$NL_LINE" device
check_eq "nothing sent while blocked: event 2 is the fence" "$(tcmu_uio_name $HBA blkfence)" "$v"
check_rmdir "rmdir the fence" "$D" 0 1000
nl_stop

# Requests that do not wait are not blocked.
nl_features 0
nl_start blk0 || tcmu_finish
mk blk0dev
check_write_ok "block_netlink=1" "$PARAMS/block_netlink" 1
check_write "blocked, features 0: enable works" "$D/enable" 1 ok 0 $FAST
nl_line "blocked, features 0" event 1 && nl_field v "$NL_LINE" cmd
check_eq "blocked, features 0: the event is still sent" ADDED_DEVICE "$v"
check_write "blocked, features 0: dev_size works" "$D/attrib/dev_size" 2097152 ok 0 $FAST
check_write_ok "block_netlink=0" "$PARAMS/block_netlink" 0
check_rmdir "rmdir" "$D" 0 $FAST
nl_stop
nl_features 1

# reset_netlink wakes every waiter with EINTR (netlink_timeout is $LONG s).
nl_start rst || tcmu_finish
mk rst1
D1=$D
mk rst2
D2=$D
bg_write rst1 "$D1/enable" 1
P1=$BG_PID
nl_line "first waiting enable" event 1
bg_write rst2 "$D2/enable" 1
P2=$BG_PID
nl_line "second waiting enable" event 2
check_write_err "reset_netlink refused while not blocked" "$PARAMS/reset_netlink" 1 "Device or resource busy"
nl_sleep 0.5
check_true "first enable still waits" pid_alive "$P1"
check_true "second enable still waits" pid_alive "$P2"
check_write_ok "block_netlink=1" "$PARAMS/block_netlink" 1
nl_cs t0
check_write_ok "reset_netlink=1" "$PARAMS/reset_netlink" 1
bg_result r1 rst1 "$P1" 10
bg_result r2 rst2 "$P2" 10
nl_cs t1
check_eq "first enable fails with EINTR" "Interrupted system call" "$r1"
check_eq "second enable fails with EINTR" "Interrupted system call" "$r2"
check_true "both woke at once ($(secs $((t1 - t0))) s)" test $((t1 - t0)) -lt 1000
check_write_ok "block_netlink=0" "$PARAMS/block_netlink" 0
check_disabled "first device after the reset" "$D1"
check_disabled "second device after the reset" "$D2"
nl_field id "$NL_LINE" device_id
nl_do v "$NL_BIN" reply added "$id" 0
check_eq "nothing pending after the reset" "ack cmd=ADDED_DEVICE_DONE ack=ENODEV" "$v"
nl_stop
check_rmdir "rmdir rst1" "$D1" 0 $FAST
check_rmdir "rmdir rst2" "$D2" 0 $FAST

# --- CAP_NET_ADMIN ---------------------------------------------------------------------

tcmu_log "--- CAP_NET_ADMIN"
if command -v setpriv > /dev/null; then
	NOCAP=(setpriv --inh-caps=-all --bounding-set=-all)
	ONLYNET=(setpriv --inh-caps=-all "--bounding-set=-all,+net_admin")
	nl_features 0
	nl_do v "${NOCAP[@]}" "$NL_BIN" features 1
	rc=$?
	check_eq "SET_FEATURES without capabilities: EPERM" "3 ack cmd=SET_FEATURES ack=EPERM" "$rc $v"
	if command -v capsh > /dev/null; then
		# shellcheck disable=SC2016 # expanded by the inner shell
		nl_do v capsh --drop=cap_net_admin -- -c 'exec "$0" features 1' "$NL_BIN"
		rc=$?
		check_eq "SET_FEATURES without CAP_NET_ADMIN only: EPERM" "3 ack cmd=SET_FEATURES ack=EPERM" "$rc $v"
	fi
	# Still features 0: nothing waits.  A listener without capabilities
	# still gets the events.
	NL_PREFIX=("${NOCAP[@]}")
	nl_start unpriv --reply all=0 || tcmu_finish
	NL_PREFIX=()
	mk capdev
	check_write "the refused SET_FEATURES changed nothing: enable does not wait" "$D/enable" 1 ok 0 $FAST
	check_reads "the refused SET_FEATURES changed nothing: nl_reply_supported 0" \
		"$D/attrib/nl_reply_supported" 0
	nl_line "unprivileged listener" event 1 && nl_field v "$NL_LINE" cmd
	check_eq "an unprivileged listener gets the events" ADDED_DEVICE "$v"
	nl_field v "$NL_LINE" uio
	nl_do v "${ONLYNET[@]}" "$NL_BIN" features 1
	rc=$?
	check_eq "SET_FEATURES with CAP_NET_ADMIN alone: accepted" "0 ack cmd=SET_FEATURES ack=0" "$rc $v"
	# The device was enabled under features 0: it waits from now on.
	check_write_ok "nl_reply_supported=1" "$D/attrib/nl_reply_supported" 1
	tcmu_snapshot before "$D"
	set_tmo $TMO
	check_write "replies without CAP_NET_ADMIN do not count: dev_size times out" \
		"$D/attrib/dev_size" 8388608 "Connection timed out" $TMO_MIN $TMO_MAX
	set_tmo $LONG
	check_unchanged "after the unanswered dev_size" "$before" "$D"
	check_reply "the unprivileged reply" 2 RECONFIG_DEVICE_DONE 0 EPERM
	nl_stop
	nl_start capok || tcmu_finish
	bg_write capok "$D/attrib/dev_size" 8388608
	WPID=$BG_PID
	if nl_line "waiting dev_size" event 1; then
		nl_field id "$NL_LINE" device_id
		nl_do v "${NOCAP[@]}" "$NL_BIN" reply reconfig "$id" 0
		check_eq "*_DONE without capabilities: EPERM" "ack cmd=RECONFIG_DEVICE_DONE ack=EPERM" "$v"
		check_true "the writer still waits" pid_alive "$WPID"
		nl_do v "${ONLYNET[@]}" "$NL_BIN" reply reconfig "$id" 0
		check_eq "*_DONE with CAP_NET_ADMIN alone: accepted" "ack cmd=RECONFIG_DEVICE_DONE ack=0" "$v"
		bg_result r capok "$WPID" 10
		check_eq "the writer succeeds" ok "$r"
		check_reads "dev_size applied" "$D/attrib/dev_size" 8388608
	fi
	nl_stop
	check_rmdir "rmdir" "$D" 0 $FAST
else
	tcmu_log "setpriv missing: CAP_NET_ADMIN checks left out"
fi

tcmu_finish
