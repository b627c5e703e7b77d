#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the "real client" tests (tcmu_rc_*.sh and friends): Debian's
# unmodified tcmu-runner, targetcli-fb / python3-rtslib-fb, tcm_loop and
# the LIO iSCSI target with open-iscsi, all driving our module.  On top of
# lib.sh (pass/fail/check_*, tcmu_finish, tcmu_skip).  Every function and
# variable here starts with rc_ / RC_ so other libraries can be sourced
# next to it.
#
# A test calls, in this order:
#
#   rc_init                       root, modules, tools, scratch dir, EXIT trap
#   rc_dbus_start                 a system D-Bus (targetcli finds the user:
#                                 handlers through it)
#   rc_runner_start [OPT...]      tcmu-runner, waiting for its handlers
#   ... targetcli / configfs / I/O ...
#   rc_teardown                   everything removed, each step checked
#   tcmu_finish
#
# If the test dies half way the EXIT trap runs "rc_teardown quiet", which
# removes the same things without reporting.
#
# Set-up and environment
#   rc_init                   skips when a required program or module is
#                             missing; sets RC_WORK (scratch dir, guest
#                             tmpfs), RC_LOGDIR ($TCMU_OUT/rc/<test>, kept
#                             after the VM), RC_DEBUG (1 on the debug kernel)
#   rc_require CMD...         skip unless every CMD is installed
#   rc_is_debug               true on the debug kernel (slow I/O: scale down)
#   rc_scale NORMAL DEBUG     print the value fitting the running kernel
#   rc_section TITLE          log the start of a part of the test, with times
#   rc_pidof NAME...          pids of the processes so named (no pidof(1))
#   TCMU_RC_TRACE=1           (environment) a time-stamped trace of every
#                             command in $RC_LOGDIR/trace
#
# D-Bus
#   rc_dbus_start             start a system bus unless one already answers
#   rc_dbus_stop              stop it again (only if rc_dbus_start started it)
#
# tcmu-runner (log in $RC_LOGDIR/tcmu-runner.log)
#   rc_runner_start [OPT...]  start it (extra options, e.g. -d) and wait until
#                             every handler of RC_HANDLERS (default
#                             "qcow zbc fbo") is on D-Bus; RC_RUNNER_PID
#   rc_runner_alive           true while it runs
#   rc_runner_stop [SECS]     SIGTERM and wait; RC_RUNNER_RC gets its exit
#                             status; returns 1 if it had to be SIGKILLed
#   rc_runner_kill            SIGKILL and reap (a crash)
#   rc_runner_log_mark        print the log's current size (a mark)
#   rc_runner_log_since MARK  print the log written after MARK
#   rc_runner_log_tail [N]    show the last N lines (for failure reports)
#
# targetcli (its preferences live in $RC_WORK, so no test changes another's)
#   One python process per test runs targetcli's own code for every
#   command (see RC_TCLI_PY): rc_init starts it, the teardown ends it.
#   rc_tcli_lines LINE...     run the lines in order, each like a one-shot
#                             "targetcli LINE" (lock taken, tree refreshed
#                             first); stops at the first failing line and
#                             returns 1; RC_TCLI_OUT gets the output.  A line
#                             starting with "!" must fail (and returns 1 if
#                             it does not)
#   rc_tcli ARG...            one line, "ARG..."
#   rc_tcli_q LINE...         queue lines; rc_tcli_run runs the queue as a
#                             batch (and empties it)
#   rc_q_user NAME HANDLER SIZE CFGSTRING [CONTROL]
#                             queue the creation of /backstores/user:HANDLER/NAME
#   rc_q_loop WWN             queue a tcm_loop target (targetcli makes the
#                             nexus with it, before any LUN is linked)
#   rc_q_loop_lun WWN SO [LUN]  queue a LUN (SO e.g. /backstores/user:qcow/q0)
#   rc_q_iscsi IQN [IP] [PORT]  queue an iSCSI target, tpg1, portal IP:PORT
#                             (default 127.0.0.1:3260, no 0.0.0.0 portal)
#   rc_q_iscsi_lun IQN SO [LUN]
#   rc_q_iscsi_acl IQN INITIATOR-IQN  (auto_add_mapped_luns maps every LUN)
#   rc_q_iscsi_demo IQN       queue demo mode (any initiator, no ACL, rw)
#   rc_q_zbc_format FILE SIZE OPTIONS
#                             queue a throw-away user:zbc backstore that
#                             formats FILE with OPTIONS (e.g.
#                             model-HM/zsize-4/conv-2): the zbc handler
#                             reformats at every open when its cfgstring
#                             has options, so a backstore whose data must
#                             survive a reopen (handler restart, restore)
#                             uses a plain "cfgstring=FILE" on a file
#                             formatted this way
#   rc_q_qcow_zbc QNAME ZNAME WWN [LINE...]
#                             queue a 64 MiB user:qcow (image RC_QCOW) and a
#                             64 MiB user:zbc (RC_ZBC, formatted once), the
#                             LINEs, and tcm_loop target WWN with them as
#                             LUNs 0 and 1; rc_qcow_zbc_devs WWN then sets
#                             RC_QBLK (the qcow disk) and RC_ZSG (the zoned
#                             disk's sg node)
#
# Storage objects and SCSI devices
#   rc_qcow_image PATH SIZE   qemu-img create -f qcow2 with metadata
#                             preallocation (the qcow handler only writes
#                             into allocated clusters)
#   rc_so_dir NAME            print the configfs dir of user backstore NAME
#   rc_loop_wwn N             print a valid naa. WWN for tcm_loop target N
#   rc_loop_dev WWN LUN [SECS]  wait for the SCSI device behind a tcm_loop
#                             LUN; sets RC_HCTL (H:C:T:L), RC_BLK (sdX/srX,
#                             empty if no block driver took it), RC_SG (sgN)
#   rc_scsi_dev HCTL [SECS]   the same for a known H:C:T:L
#   rc_loop_sg DESC WWN LUN TYPE  rc_loop_dev, then TEST UNIT READY and
#                             the peripheral device type checked
#   rc_zone_wp SG LBA         write pointer of the zone at LBA
#   rc_lio_scsi_devs          list the H:C:T:L of every LIO-ORG SCSI device
#   rc_clear_ua SG            TEST UNIT READY until no UNIT ATTENTION is left
#                             (a new LUN on the same nexus raises one on the
#                             others; sd retries it, sg_* tools do not)
#
# iSCSI initiator (open-iscsi)
#   RC_ISCSI_INITIATOR        our initiator name (written to the guest's
#                             /etc/iscsi/initiatorname.iscsi by rc_iscsi_init)
#   rc_iscsi_target_init      iscsi_target_mod only (skips when missing)
#   rc_iscsi_init             modules (iscsi_target_mod, iscsi_tcp) and iscsid;
#                             skips when they are missing
#   rc_iscsi_login IQN [IP] [PORT]   sendtargets discovery + login
#   rc_iscsi_dev IQN LUN [SECS]      wait for the disk of a logged-in LUN;
#                             sets RC_HCTL / RC_BLK / RC_SG like rc_loop_dev
#   rc_iscsi_logout IQN [IP] [PORT]  logout and delete the node record
#   rc_iscsi_sessions         print the target names of the open sessions
#   rc_iscsi_stop             log out of everything, stop iscsid
#
# Data
#   rc_random FILE BYTES            random data
#   rc_file_size FILE               its size (known without stat for rc_random's)
#   rc_dd_write DEV FILE OFFSET     write FILE at byte OFFSET (O_DIRECT, fsync)
#   rc_dd_read DEV OUT OFFSET LEN   read LEN bytes at OFFSET (O_DIRECT)
#   rc_check_data DESC DEV FILE OFFSET   read back and compare byte for byte
#   rc_sg_write SG FILE LBA BLKSZ / rc_sg_read SG OUT LBA BLOCKS BLKSZ
#                             WRITE(10)/READ(10) through the sg node (sg_dd)
#
# Teardown
#   rc_leftovers              print what is left of LIO, uio, SCSI devices,
#                             iSCSI sessions, daemons (empty when clean)
#   rc_teardown [quiet]       iSCSI logout, iscsid stop, targetcli
#                             clearconfig, tcmu-runner SIGTERM (must exit
#                             0), D-Bus stop; then rc_leftovers must be
#                             empty.  Each step is a check unless "quiet".
#
# shellcheck disable=SC2034 # variables here are used by the sourcing tests

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RC_TARGET=$CONFIGFS/target
RC_LOOPBACK=$RC_TARGET/loopback
RC_ISCSI=$RC_TARGET/iscsi
RC_HANDLERS=${RC_HANDLERS:-"qcow zbc fbo"}
RC_ISCSI_INITIATOR=iqn.2003-01.org.linux-iscsi.tcmu-vm:rc-initiator
RC_SAVECONFIG=/etc/rtslib-fb-target/saveconfig.json

RC_WORK=
RC_LOGDIR=
RC_DEBUG=
RC_TORN_DOWN=
RC_RUNNER_PID=
RC_RUNNER_RC=
RC_RUNNER_LOG=
RC_DBUS_PID=
RC_ISCSID_PID=
RC_ISCSI_USED=
RC_TCLI_OUT=
RC_TCLI_QUEUE=()
RC_MOUNTS=()
RC_BG_PIDS=()
RC_HCTL=
RC_BLK=
RC_SG=
RC_T0=$SECONDS
RC_SECTION_T=$SECONDS

# The targetcli server: /usr/bin/targetcli's own code (loaded as a module,
# so its main() does not run) in one python process for the whole test.
# Under TCG a python start that imports rtslib, configshell and pyparsing
# costs 10 s on the stock kernel and several times that on the debug one,
# which is where most of these tests' time used to go.  The same
# TargetCLI preferences, UIRoot and lock as a one-shot "targetcli CMD":
# for every batch the server takes targetcli's lock, refreshes the tree
# from configfs and D-Bus (as each targetcli run does at start), and runs
# each line with run_cmdline().
#
# Protocol on its stdin / stdout (two FIFOs): command lines, then "@@run";
# it answers with "@@cmd LINE" before each line, the line's output, and
# "@@status N" at the end (0 all lines did what they should, 1 not).  A
# line that raises prints the error's text and "@@error LINE"; a line
# starting with "!" must raise ("@@refused LINE" when it does, "@@error
# LINE" when it succeeds).  The first line gone wrong ends the batch.
RC_TCLI_PY='
import sys, os, fcntl
try:
    import importlib.machinery, importlib.util
    loader = importlib.machinery.SourceFileLoader("rc_targetcli", "/usr/bin/targetcli")
    spec = importlib.util.spec_from_loader("rc_targetcli", loader)
    tcli = importlib.util.module_from_spec(spec)
    loader.exec_module(tcli)
    shell = tcli.TargetCLI(os.getenv("TARGETCLI_HOME", "~/.targetcli"))
    root = tcli.UIRoot(shell, as_root=True)
except Exception as e:
    print("@@missing %s: %s" % (type(e).__name__, e), flush=True)
    sys.exit(1)
# No saving behind our back, no 0.0.0.0 portal (the debug kernel has no
# IPv6 and the tests want 127.0.0.1 only).
shell.run_cmdline("set global auto_save_on_exit=false auto_add_default_portal=false auto_add_mapped_luns=true")
print("@@ready", flush=True)
batch = []
while True:
    line = sys.stdin.readline()
    if not line:
        break
    line = line.strip()
    if line != "@@run":
        if line and not line.startswith("#"):
            batch.append(line)
        continue
    status = 0
    with open(tcli.lock_file, "w+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            root.refresh()
        except Exception as e:
            print("%s\n@@error refresh" % e, flush=True)
            status = 1
        for line in batch if status == 0 else []:
            must_fail = line.startswith("!")
            if must_fail:
                line = line[1:].strip()
            print("@@cmd " + line, flush=True)
            try:
                shell.run_cmdline(line)
                ok = not must_fail
            except Exception as e:
                print(e, flush=True)
                ok = must_fail
            sys.stdout.flush()
            if not ok:
                print("@@error " + line, flush=True)
                status = 1
                break
            if must_fail:
                print("@@refused " + line, flush=True)
    batch = []
    print("@@status %d" % status, flush=True)
'
RC_TCLI_PID=
RC_TCLI_W=
RC_TCLI_R=
RC_TCLI_READY=

# ---------------------------------------------------------------------------
# Set-up

rc_is_debug()
{
	local r
	tcmu_read r /proc/sys/kernel/osrelease
	case $r in
	*tcmu-debug*) return 0 ;;
	esac
	[ -e "$KMEMLEAK" ]
}

# rc_pidof NAME...: the pids of the processes with one of these names,
# from /proc with shell builtins (pidof would be one more program to start,
# and the tests ask often).
rc_pidof()
{
	local f c n out=()
	for f in /proc/[0-9]*/comm; do
		tcmu_read c "$f" || continue
		c=${c%$'\n'}
		for n in "$@"; do
			if [ "$c" == "$n" ]; then
				f=${f#/proc/}
				out+=("${f%/comm}")
			fi
		done
	done
	[ ${#out[@]} -gt 0 ] || return 1
	echo "${out[*]}"
}

rc_scale()
{
	if [ -n "$RC_DEBUG" ]; then
		echo "$2"
	else
		echo "$1"
	fi
}

rc_require()
{
	local c
	for c in "$@"; do
		command -v "$c" > /dev/null 2>&1 || tcmu_skip "$c is not installed"
	done
}

rc_section()
{
	tcmu_log "--- $1 (previous part took $((SECONDS - RC_SECTION_T))s, $((SECONDS - RC_T0))s so far)"
	RC_SECTION_T=$SECONDS
}

# rc_modprobe MODULE [skip|fail]: load a module; what to do when it is not
# there (default skip the test).
rc_modprobe()
{
	local m=${1//-/_}
	[ -d "/sys/module/$m" ] && return 0
	modprobe "$1" 2>/dev/null && return 0
	if [ "${2:-skip}" == fail ]; then
		tcmu_fatal "modprobe $1 failed"
	fi
	tcmu_skip "kernel module $1 is not available"
}

rc_init()
{
	local name p

	tcmu_require_root
	rc_require tcmu-runner targetcli dbus-daemon dbus-send qemu-img sg_dd \
		sg_inq sg_readcap sg_turs dd cmp md5sum python3 timeout mkfifo od
	tcmu_load_user
	rc_modprobe tcm_loop
	# Without udev nothing loads the upper-level SCSI drivers.
	modprobe sd_mod 2>/dev/null
	modprobe sr_mod 2>/dev/null
	modprobe sg 2>/dev/null
	if rc_is_debug; then
		RC_DEBUG=1
		tcmu_log "debug kernel: smaller I/O volumes"
	fi
	name=${0##*/}
	name=${name%.sh}
	RC_WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcmu-rc.XXXXXX") ||
		tcmu_fatal "cannot create a scratch directory"
	RC_LOGDIR=$TCMU_OUT/rc/$name
	[ -e "$RC_LOGDIR" ] && rm -rf "$RC_LOGDIR"
	# (Few programs: under TCG each start costs.)  rtslib keeps
	# persistent reservations in /etc/rtslib-fb-target/pr (PR OUT fails
	# without it).
	mkdir -p "$RC_LOGDIR" "$RC_WORK/targetcli" /etc/rtslib-fb-target/pr || {
		RC_LOGDIR=$RC_WORK/log
		mkdir -p "$RC_LOGDIR" "$RC_WORK/targetcli" /etc/rtslib-fb-target/pr
	}
	tcmu_sleep_init "$RC_WORK"
	# TCMU_RC_TRACE=1: every command with a time stamp in $RC_LOGDIR/trace
	# (to find where the time goes).
	if [ -n "${TCMU_RC_TRACE:-}" ]; then
		exec {BASH_XTRACEFD}> "$RC_LOGDIR/trace"
		PS4='+ ${EPOCHREALTIME} ${FUNCNAME[0]:-main}: '
		set -x
	fi
	export TARGETCLI_HOME=$RC_WORK/targetcli
	# A crashing program must not spend time writing a core file.
	ulimit -c 0
	trap rc_exit_trap EXIT

	# What an earlier test left would only confuse this one.
	p=$(rc_leftovers)
	if [ -n "$p" ]; then
		tcmu_log "left over before this test (cleaning up):"
		printf '%s\n' "$p" | sed 's/^/#   /'
		rc_cleanup_stale
	fi
	tcmu_log "$(tcmu_value /proc/sys/kernel/osrelease); module $(modinfo -n target_core_user 2>/dev/null); logs in $RC_LOGDIR"
	# It loads targetcli while the test starts its daemons.
	rc_tcli_start
}

rc_exit_trap()
{
	[ -n "$RC_TORN_DOWN" ] || rc_teardown quiet
	tcmu_cleanup
	[ -n "$RC_WORK" ] && rm -rf "$RC_WORK"
	return 0
}

# Stop daemons a previous test left running (by pid) and empty LIO.  The
# disks going away send commands (SYNCHRONIZE CACHE): a tcmu-runner of our
# own serves them meanwhile, or each would wait for cmd_time_out.
rc_cleanup_stale()
{
	local p
	for p in $(rc_pidof tcmu-runner iscsid); do
		kill -KILL "$p" 2>/dev/null
	done
	tcmu_wait_for 10 eval '! rc_pidof tcmu-runner iscsid > /dev/null'
	if [ -n "$(rc_iscsi_sessions)" ]; then
		# Without iscsid the sessions cannot log out cleanly; removing
		# the target ends them from the other side.
		rc_iscsi_init > /dev/null 2>&1
		timeout -k 5 60 iscsiadm -m node -u > /dev/null 2>&1
		rc_iscsi_stop > /dev/null 2>&1
		RC_ISCSI_USED=
	fi
	if [ -d "$TARGET_CORE" ] && ls -d "$TARGET_CORE"/user_*/* > /dev/null 2>&1; then
		rc_dbus_start > /dev/null 2>&1
		# shellcheck disable=SC2119 # no extra options
		rc_runner_start > /dev/null 2>&1
	fi
	rc_lio_purge
	rc_runner_stop 10 > /dev/null 2>&1
	rc_dbus_stop
	TCMU_FAILS=0
	TCMU_PASSES=0
}

# ---------------------------------------------------------------------------
# D-Bus

rc_dbus_answers()
{
	dbus-send --system --reply-timeout=10000 --print-reply --dest=org.freedesktop.DBus \
		/org/freedesktop/DBus org.freedesktop.DBus.GetId > /dev/null 2>&1
}

rc_dbus_start()
{
	if [ -S /run/dbus/system_bus_socket ] && rc_dbus_answers; then
		tcmu_log "a system D-Bus is already running"
		return 0
	fi
	[ -d /run/dbus ] || mkdir -p /run/dbus
	[ -e /run/dbus/pid ] || [ -e /run/dbus/system_bus_socket ] &&
		rm -f /run/dbus/pid /run/dbus/system_bus_socket
	(rc_daemon_fds; exec setsid dbus-daemon --system --nofork --nopidfile) < /dev/null \
		> "$RC_LOGDIR/dbus.log" 2>&1 &
	RC_DBUS_PID=$!
	if ! tcmu_wait_for 20 rc_dbus_answers; then
		fail "the system D-Bus did not come up"
		sed 's/^/#   dbus: /' "$RC_LOGDIR/dbus.log"
		return 1
	fi
	return 0
}

rc_dbus_stop()
{
	[ -n "$RC_DBUS_PID" ] || return 0
	kill -TERM "$RC_DBUS_PID" 2>/dev/null
	tcmu_wait_for 10 rc_pid_gone "$RC_DBUS_PID" || kill -KILL "$RC_DBUS_PID" 2>/dev/null
	wait "$RC_DBUS_PID" 2>/dev/null
	RC_DBUS_PID=
	rm -f /run/dbus/system_bus_socket
}

rc_pid_gone()
{
	! kill -0 "$1" 2>/dev/null
}

# ---------------------------------------------------------------------------
# tcmu-runner

# Print the names of the handlers tcmu-runner has put on D-Bus (their
# object paths' last part), on one line.
rc_runner_handlers()
{
	local out l names=()
	out=$(dbus-send --system --reply-timeout=10000 --print-reply \
		--dest=org.kernel.TCMUService1 /org/kernel/TCMUService1 \
		org.freedesktop.DBus.ObjectManager.GetManagedObjects 2> /dev/null)
	while IFS= read -r l; do
		[[ "$l" =~ object\ path\ \"/org/kernel/TCMUService1/([^\"]*)\" ]] &&
			names+=("${BASH_REMATCH[1]}")
	done <<< "$out"
	echo "${names[*]}"
}

rc_runner_has_handlers()
{
	local have h
	have=" $(rc_runner_handlers) "
	for h in $RC_HANDLERS; do
		[[ "$have" == *" $h "* ]] || return 1
	done
}

# rc_runner_handler_dir: $RC_WORK/handlers holds links to the handler
# modules of RC_HANDLERS only, for --handler-path: tcmu-runner loads every
# module it finds, and the rbd one alone (librados) would cost seconds per
# start under TCG.
rc_runner_handler_dir()
{
	local h so d=$RC_WORK/handlers sos=() found
	[ -d "$d" ] && return 0
	for h in $RC_HANDLERS; do
		case $h in
		zbc) so=handler_file_zbc.so ;;
		fbo) so=handler_file_optical.so ;;
		*) so=handler_$h.so ;;
		esac
		found=(/usr/lib/*/tcmu-runner/"$so")
		if [ ! -f "${found[0]}" ]; then
			fail "tcmu-runner's $h handler ($so) is not installed"
			return 1
		fi
		sos+=("${found[0]}")
	done
	mkdir "$d" && ln -s "${sos[@]}" "$d/"
}

# shellcheck disable=SC2120 # the tests pass the options
rc_runner_start()
{
	local p t0

	if [ -n "$RC_RUNNER_PID" ] && rc_runner_alive; then
		fail "rc_runner_start: tcmu-runner $RC_RUNNER_PID still running"
		return 1
	fi
	if p=$(rc_pidof tcmu-runner); then
		fail "another tcmu-runner is running (pid $p)"
		return 1
	fi
	rc_runner_handler_dir || return 1
	RC_RUNNER_LOG=$RC_LOGDIR/tcmu-runner.log
	echo "# --- tcmu-runner $* started $(printf '%(%T)T')" >> "$RC_LOGDIR/tcmu-runner.out"
	t0=$SECONDS
	(rc_daemon_fds; exec setsid tcmu-runner -l "$RC_LOGDIR" \
		--handler-path "$RC_WORK/handlers" "$@") < /dev/null \
		>> "$RC_LOGDIR/tcmu-runner.out" 2>&1 &
	RC_RUNNER_PID=$!
	if ! tcmu_wait_for 60 rc_runner_has_handlers; then
		fail "tcmu-runner did not register the handlers $RC_HANDLERS on D-Bus (has: $(rc_runner_handlers))"
		rc_runner_log_tail 20
		return 1
	fi
	if ! rc_runner_alive; then
		fail "tcmu-runner exited right after starting"
		rc_runner_log_tail 20
		return 1
	fi
	tcmu_log "tcmu-runner $RC_RUNNER_PID up after $((SECONDS - t0))s, handlers: $(rc_runner_handlers)"
	return 0
}

rc_runner_alive()
{
	[ -n "$RC_RUNNER_PID" ] && kill -0 "$RC_RUNNER_PID" 2>/dev/null
}

rc_runner_gone()
{
	! rc_runner_alive
}

# rc_runner_stop [SECONDS]: SIGTERM, wait; RC_RUNNER_RC = exit status.
rc_runner_stop()
{
	local rc=0
	RC_RUNNER_RC=
	[ -n "$RC_RUNNER_PID" ] || return 0
	kill -TERM "$RC_RUNNER_PID" 2>/dev/null
	if ! tcmu_wait_for "${1:-30}" rc_runner_gone; then
		tcmu_log "tcmu-runner $RC_RUNNER_PID ignored SIGTERM for ${1:-30}s, killing it"
		kill -KILL "$RC_RUNNER_PID" 2>/dev/null
		rc=1
	fi
	wait "$RC_RUNNER_PID" 2>/dev/null
	RC_RUNNER_RC=$?
	RC_RUNNER_PID=
	return $rc
}

rc_runner_kill()
{
	[ -n "$RC_RUNNER_PID" ] || return 0
	kill -KILL "$RC_RUNNER_PID" 2>/dev/null
	wait "$RC_RUNNER_PID" 2>/dev/null
	RC_RUNNER_RC=$?
	RC_RUNNER_PID=
}

# The log is read with shell builtins (byte offsets: LC_ALL=C).
rc_runner_log_mark()
{
	local LC_ALL=C v
	tcmu_read v "$RC_RUNNER_LOG"
	echo "${#v}"
}

rc_runner_log_since()
{
	local LC_ALL=C v
	tcmu_read v "$RC_RUNNER_LOG" || return 0
	printf '%s' "${v:$1}"
}

rc_runner_log_tail()
{
	[ -s "$RC_RUNNER_LOG" ] || return 0
	tail -n "${1:-20}" "$RC_RUNNER_LOG" | sed 's/^/#   tcmu-runner: /'
	[ -s "$RC_LOGDIR/tcmu-runner.out" ] &&
		tail -n 5 "$RC_LOGDIR/tcmu-runner.out" | sed 's/^/#   tcmu-runner stdout: /'
	return 0
}

# rc_runner_log_wait SECONDS MARK REGEX: wait until the log after MARK has
# a line matching REGEX (tcmu-runner writes its log from a thread).
rc_runner_log_wait()
{
	local tries=$(($1 * 5)) v
	while :; do
		v=$(rc_runner_log_since "$2")
		[[ "$v" =~ $3 ]] && return 0
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		tcmu_sleep 0.2
	done
}

# ---------------------------------------------------------------------------
# targetcli

# rc_tcli_start: start the targetcli server in the background (it imports
# targetcli while the test starts its daemons); rc_tcli_ready waits for it.
rc_tcli_start()
{
	local in=$RC_WORK/tcli.in out=$RC_WORK/tcli.out
	[ -n "$RC_TCLI_PID" ] && return 0
	[ -p "$in" ] || mkfifo "$in" "$out" || tcmu_fatal "mkfifo in $RC_WORK failed"
	# Its own session, like the daemons: no signal of ours reaches it.
	PYTHONUNBUFFERED=1 setsid "$TCMU_PYTHON" -c "$RC_TCLI_PY" < "$in" > "$out" 2>&1 &
	RC_TCLI_PID=$!
	# The opens pair up with the server's, in the same order.
	exec {RC_TCLI_W}> "$in" {RC_TCLI_R}< "$out"
	RC_TCLI_READY=
}

# rc_tcli_ready: wait (up to 300 s) for the server; skips the test when
# targetcli cannot be loaded.
rc_tcli_ready()
{
	local line
	[ -n "$RC_TCLI_READY" ] && return 0
	[ -n "$RC_TCLI_PID" ] || rc_tcli_start
	while IFS= read -r -t 300 line <&"$RC_TCLI_R"; do
		case $line in
		@@ready)
			RC_TCLI_READY=1
			return 0
			;;
		"@@missing "*)
			rc_tcli_stop
			tcmu_skip "targetcli / python3-rtslib-fb cannot be loaded (${line#@@missing })"
			;;
		*) tcmu_log "targetcli server: $line" ;;
		esac
	done
	fail "the targetcli server did not start within 300 s"
	rc_tcli_stop
	return 1
}

rc_tcli_stop()
{
	[ -n "$RC_TCLI_W" ] && exec {RC_TCLI_W}>&-
	[ -n "$RC_TCLI_R" ] && exec {RC_TCLI_R}<&-
	RC_TCLI_W=
	RC_TCLI_R=
	if [ -n "$RC_TCLI_PID" ]; then
		# EOF on its stdin ends it; a busy one is killed.
		tcmu_wait_for 10 rc_pid_gone "$RC_TCLI_PID" || kill -KILL "$RC_TCLI_PID" 2>/dev/null
		wait "$RC_TCLI_PID" 2>/dev/null
	fi
	RC_TCLI_PID=
	RC_TCLI_READY=
}

# rc_daemon_fds: close the FIFOs of the targetcli server and tcmu_sleep in
# a daemon about to be started (call it in the background subshell), so
# that only this shell holds them.
rc_daemon_fds()
{
	[ -n "$RC_TCLI_W" ] && exec {RC_TCLI_W}>&-
	[ -n "$RC_TCLI_R" ] && exec {RC_TCLI_R}<&-
	[ -n "$TCMU_SLEEP_FD" ] && exec {TCMU_SLEEP_FD}<&-
	return 0
}

# rc_tcli_lines LINE...: run the lines as one batch; RC_TCLI_OUT gets
# what they printed (without the protocol lines); the log shows it all.
rc_tcli_lines()
{
	local line rc=1 t0=$SECONDS left out=()
	RC_TCLI_OUT=
	rc_tcli_ready || return 1
	if ! printf '%s\n' "$@" @@run >&"$RC_TCLI_W"; then
		fail "the targetcli server is gone"
		rc_tcli_stop
		return 1
	fi
	while :; do
		left=$((t0 + 600 - SECONDS))
		if [ $left -le 0 ] || ! IFS= read -r -t $left line <&"$RC_TCLI_R"; then
			tcmu_log "targetcli server: no answer within 600 s or gone"
			rc_tcli_stop
			rc=1
			break
		fi
		case $line in
		"@@status "*)
			rc=${line#@@status }
			break
			;;
		"@@cmd "*) echo "#   targetcli> ${line#@@cmd }" ;;
		"@@refused "*) echo "#   targetcli: refused as expected: ${line#@@refused }" ;;
		"@@error "*) echo "#   targetcli: FAILED: ${line#@@error }" ;;
		*)
			out+=("$line")
			echo "#   targetcli: $line"
			;;
		esac
	done
	[ ${#out[@]} -gt 0 ] && RC_TCLI_OUT=$(printf '%s\n' "${out[@]}")
	tcmu_log "targetcli: $# line(s), status $rc, $((SECONDS - t0))s"
	return "$rc"
}

# rc_tcli ARG...: one targetcli command line, as "targetcli ARG..." would
# run it.
rc_tcli()
{
	rc_tcli_lines "$*"
}

rc_tcli_q()
{
	RC_TCLI_QUEUE+=("$@")
}

rc_tcli_run()
{
	local rc
	rc_tcli_lines "${RC_TCLI_QUEUE[@]}"
	rc=$?
	RC_TCLI_QUEUE=()
	return $rc
}

rc_q_user()
{
	local line="/backstores/user:$2 create name=$1 size=$3 cfgstring=$4"
	[ -n "${5:-}" ] && line+=" control=$5"
	rc_tcli_q "$line"
}

rc_q_loop()
{
	rc_tcli_q "/loopback create $1"
}

rc_q_loop_lun()
{
	rc_tcli_q "/loopback/$1/luns create $2${3:+ lun=$3}"
}

rc_q_iscsi()
{
	rc_tcli_q "/iscsi create $1" \
		"/iscsi/$1/tpg1/portals create ${2:-127.0.0.1} ${3:-3260}"
}

rc_q_iscsi_lun()
{
	rc_tcli_q "/iscsi/$1/tpg1/luns create $2${3:+ lun=$3}"
}

rc_q_iscsi_acl()
{
	rc_tcli_q "/iscsi/$1/tpg1/acls create $2"
}

rc_q_iscsi_demo()
{
	rc_tcli_q "/iscsi/$1/tpg1 set attribute authentication=0 generate_node_acls=1 demo_mode_write_protect=0 cache_dynamic_acls=1"
}

RC_ZFMT_N=0
rc_q_zbc_format()
{
	RC_ZFMT_N=$((RC_ZFMT_N + 1))
	rc_tcli_q "/backstores/user:zbc create name=rc_zfmt$RC_ZFMT_N size=$2 cfgstring=$3@$1" \
		"/backstores/user:zbc delete rc_zfmt$RC_ZFMT_N"
}

# rc_q_qcow_zbc QNAME ZNAME WWN [LINE...]: the pair of backstores the
# restart and saveconfig tests use: RC_QCOW, a 64 MiB qcow2 image, behind
# user:qcow QNAME, and RC_ZBC, a 64 MiB host-managed zoned disk (4 MiB
# zones, 2 conventional) formatted once, behind user:zbc ZNAME; the LINEs
# (attributes to set before the export) are queued next, then tcm_loop
# target WWN with LUN 0 qcow, LUN 1 zbc.  rc_qcow_zbc_devs finds the disks.
rc_q_qcow_zbc()
{
	local q=$1 z=$2 wwn=$3
	shift 3
	RC_QCOW=$RC_WORK/$q.qcow2
	RC_ZBC=$RC_WORK/$z.zbc
	check_true "qemu-img creates a 64 MiB qcow2 image" rc_qcow_image "$RC_QCOW" 64M ||
		tcmu_finish
	rc_q_user "$q" qcow 64M "$RC_QCOW"
	# Formatted once: with options in its cfgstring the handler would
	# format the file again whenever it is reopened.
	rc_q_zbc_format "$RC_ZBC" 64M model-HM/zsize-4/conv-2
	rc_q_user "$z" zbc 64M "$RC_ZBC"
	[ $# -gt 0 ] && rc_tcli_q "$@"
	rc_q_loop "$wwn"
	rc_q_loop_lun "$wwn" "/backstores/user:qcow/$q" 0
	rc_q_loop_lun "$wwn" "/backstores/user:zbc/$z" 1
}

# rc_qcow_zbc_devs WWN: RC_QBLK (the qcow disk, sdX) and RC_ZSG (the zoned
# disk's sg node, unit attentions consumed); fails the test without them.
rc_qcow_zbc_devs()
{
	RC_QBLK=
	RC_ZSG=
	if ! rc_loop_dev "$1" 0 || [ -z "$RC_BLK" ]; then
		fail "no tcm_loop disk for the qcow backstore"
		return 1
	fi
	RC_QBLK=$RC_BLK
	if ! rc_loop_dev "$1" 1 || [ -z "$RC_SG" ]; then
		fail "no sg node for the zbc backstore"
		return 1
	fi
	RC_ZSG=$RC_SG
	rc_clear_ua "$RC_ZSG"
}

# ---------------------------------------------------------------------------
# Storage objects and SCSI devices

rc_qcow_image()
{
	qemu-img create -q -f qcow2 -o preallocation=metadata "$1" "$2"
}

rc_so_dir()
{
	local d
	for d in "$TARGET_CORE"/user_*/"$1"; do
		[ -d "$d" ] && { echo "$d"; return 0; }
	done
	return 1
}

rc_loop_wwn()
{
	printf 'naa.50014059c%07x\n' "$1"
}

rc_lio_scsi_devs()
{
	local d v
	for d in /sys/bus/scsi/devices/*:*:*:*; do
		[ -r "$d/vendor" ] || continue
		tcmu_read v "$d/vendor"
		[[ "$v" == LIO-ORG* ]] && echo "${d##*/}"
	done
}

# rc_scsi_dev HCTL [SECONDS]: wait for the device and its upper drivers: sg
# always, the block driver for a disk or CD-ROM, and up to 5 s for a zoned
# disk (sd leaves it alone without CONFIG_BLK_DEV_ZONED).
rc_scsi_dev()
{
	local hctl=$1 secs=${2:-30} i b s t=
	local d=/sys/bus/scsi/devices/$1
	RC_HCTL=$hctl
	RC_BLK=
	RC_SG=
	for ((i = 0; i < secs * 5; i++)); do
		if [ -d "$d" ]; then
			[ -n "$t" ] || { tcmu_read t "$d/type"; t=${t%$'\n'}; }
			for b in "$d"/block/*; do
				[ -e "$b" ] && RC_BLK=${b##*/}
			done
			for s in "$d"/scsi_generic/*; do
				[ -e "$s" ] && RC_SG=${s##*/}
			done
			if [ -n "$RC_SG" ] && [ -c "/dev/$RC_SG" ]; then
				[ -n "$RC_BLK" ] && [ -b "/dev/$RC_BLK" ] && return 0
				case "$t" in
				0 | 5) ;;
				20) [ $i -ge 25 ] && return 0 ;;
				*) return 0 ;;
				esac
			fi
		fi
		tcmu_sleep 0.2
	done
	RC_BLK=
	[ -n "$RC_SG" ]
}

rc_clear_ua()
{
	local i
	for ((i = 0; i < 8; i++)); do
		sg_turs "/dev/$1" > /dev/null 2>&1 && return 0
		tcmu_sleep 0.2
	done
	return 1
}

rc_loop_dev()
{
	local addr
	tcmu_read addr "$RC_LOOPBACK/$1/tpgt_1/address" || return 1
	addr=${addr%$'\n'}
	[ -n "$addr" ] || return 1
	rc_scsi_dev "$addr:$2" "${3:-30}"
}

# rc_loop_sg DESC WWN LUN TYPE: wait for the SCSI device of a tcm_loop LUN
# (fails the test when there is none), consume its unit attentions and
# check its peripheral device type; RC_HCTL / RC_BLK / RC_SG as
# rc_loop_dev sets them.
rc_loop_sg()
{
	if ! rc_loop_dev "$2" "$3" || [ -z "$RC_SG" ]; then
		fail "$1: no SCSI device for LUN $3"
		return 1
	fi
	tcmu_log "$1: LUN $3 is $RC_HCTL sg=$RC_SG block=${RC_BLK:-none}"
	check_true "$1: TEST UNIT READY (unit attentions consumed)" rc_clear_ua "$RC_SG"
	check_eq "$1: peripheral device type $4" "$4" \
		"$(tcmu_value "/sys/bus/scsi/devices/$RC_HCTL/type")"
}

# rc_zone_wp SG LBA: the write pointer of the zone at LBA: bytes 24-31 of
# the first descriptor (after the 64-byte header) of REPORT ZONES' answer.
rc_zone_wp()
{
	local b wp=0
	for b in $(sg_rep_zones --raw --start="$2" "/dev/$1" 2> /dev/null |
		od -An -v -tu1 -j88 -N8); do
		wp=$((wp * 256 + b))
	done
	echo "$wp"
}

# ---------------------------------------------------------------------------
# iSCSI

# rc_iscsi_target_init: only the iSCSI target (for initiators that need no
# iscsid, e.g. libiscsi's tools); skips when iscsi_target_mod is missing.
rc_iscsi_target_init()
{
	rc_modprobe iscsi_target_mod
}

rc_iscsi_init()
{
	rc_require iscsiadm iscsid
	rc_modprobe iscsi_target_mod
	rc_modprobe iscsi_tcp
	RC_ISCSI_USED=1
	mkdir -p /etc/iscsi /run/lock/iscsi
	printf 'InitiatorName=%s\n' "$RC_ISCSI_INITIATOR" > /etc/iscsi/initiatorname.iscsi
	if [ -z "$RC_ISCSID_PID" ] || rc_pid_gone "$RC_ISCSID_PID"; then
		# Its own session: iscsid signals its whole process group
		# when it shuts down.
		(rc_daemon_fds; exec setsid iscsid -f) < /dev/null > "$RC_LOGDIR/iscsid.log" 2>&1 &
		RC_ISCSID_PID=$!
		# iscsiadm talks to it over an abstract socket; give it a moment.
		if ! tcmu_wait_for 20 rc_iscsid_answers; then
			fail "iscsid did not start"
			sed 's/^/#   iscsid: /' "$RC_LOGDIR/iscsid.log"
			return 1
		fi
	fi
	return 0
}

rc_iscsid_answers()
{
	rc_pid_gone "$RC_ISCSID_PID" && return 1
	iscsiadm -m session > /dev/null 2>&1
	# 21: no active sessions, which is fine; anything else means no daemon.
	case $? in
	0 | 21) return 0 ;;
	esac
	return 1
}

rc_iscsi_sessions()
{
	local s v
	for s in /sys/class/iscsi_session/session*; do
		[ -r "$s/targetname" ] || continue
		tcmu_read v "$s/targetname"
		echo "${v%$'\n'}"
	done
}

rc_iscsi_login()
{
	local iqn=$1 portal=${2:-127.0.0.1}:${3:-3260} out
	out=$(timeout -k 5 120 iscsiadm -m discovery -t sendtargets -p "$portal" 2>&1)
	printf '%s\n' "$out" | sed 's/^/#   iscsiadm discovery: /'
	if ! printf '%s\n' "$out" | grep -q " $iqn\$"; then
		fail "sendtargets discovery on $portal does not list $iqn"
		return 1
	fi
	out=$(timeout -k 5 120 iscsiadm -m node -T "$iqn" -p "$portal" --login 2>&1)
	local rc=$?
	printf '%s\n' "$out" | sed 's/^/#   iscsiadm login: /'
	if [ $rc -ne 0 ]; then
		fail "iscsiadm login to $iqn at $portal failed (exit $rc)"
		return 1
	fi
	return 0
}

# rc_iscsi_dev IQN LUN [SECONDS]
rc_iscsi_dev()
{
	local iqn=$1 lun=$2 secs=${3:-30} s v d i
	for ((i = 0; i < secs * 5; i++)); do
		for s in /sys/class/iscsi_session/session*; do
			tcmu_read v "$s/targetname" || continue
			[ "${v%$'\n'}" == "$iqn" ] || continue
			for d in "$s"/device/target*/*:*:*:"$lun"; do
				[ -d "$d" ] || continue
				rc_scsi_dev "${d##*/}" $((secs - i / 5)) && return 0
			done
		done
		tcmu_sleep 0.2
	done
	return 1
}

rc_iscsi_logout()
{
	local iqn=$1 portal=${2:-127.0.0.1}:${3:-3260} out rc
	out=$(timeout -k 5 120 iscsiadm -m node -T "$iqn" -p "$portal" --logout 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed 's/^/#   iscsiadm logout: /'
	timeout -k 5 60 iscsiadm -m node -T "$iqn" -p "$portal" -o delete > /dev/null 2>&1
	return $rc
}

rc_iscsi_stop()
{
	local rc=0
	[ -n "$RC_ISCSI_USED" ] || return 0
	if [ -n "$(rc_iscsi_sessions)" ]; then
		timeout -k 5 120 iscsiadm -m node -u > /dev/null 2>&1 || rc=1
	fi
	timeout -k 5 60 iscsiadm -m node -o delete > /dev/null 2>&1
	timeout -k 5 60 iscsiadm -m discoverydb -t sendtargets -p 127.0.0.1:3260 -o delete > /dev/null 2>&1
	if [ -n "$RC_ISCSID_PID" ]; then
		kill -TERM "$RC_ISCSID_PID" 2>/dev/null
		tcmu_wait_for 15 rc_pid_gone "$RC_ISCSID_PID" || {
			kill -KILL "$RC_ISCSID_PID" 2>/dev/null
			rc=1
		}
		wait "$RC_ISCSID_PID" 2>/dev/null
		RC_ISCSID_PID=
	fi
	return $rc
}

# ---------------------------------------------------------------------------
# Data

declare -A RC_SIZE=()
rc_random()
{
	head -c "$2" /dev/urandom > "$1" && RC_SIZE[$1]=$2
}

# rc_file_size FILE: its size in bytes (known without stat(1) when
# rc_random made it).
rc_file_size()
{
	if [ -n "${RC_SIZE[$1]:-}" ]; then
		echo "${RC_SIZE[$1]}"
	else
		stat -c %s "$1"
	fi
}

# rc_dd_write DEV FILE OFFSET [BS]
rc_dd_write()
{
	dd if="$2" of="$1" bs="${4:-65536}" seek="$3" oflag=direct,seek_bytes \
		conv=notrunc,fsync status=none
}

# rc_dd_read DEV OUT OFFSET LEN [BS]
rc_dd_read()
{
	dd if="$1" of="$2" bs="${5:-65536}" skip="$3" count="$4" \
		iflag=direct,skip_bytes,count_bytes status=none
}

# rc_check_data DESC DEV FILE OFFSET [BS]: the device holds FILE at OFFSET.
rc_check_data()
{
	local out=$RC_WORK/readback len
	len=$(rc_file_size "$3")
	if ! rc_dd_read "$2" "$out" "$4" "$len" "${5:-65536}"; then
		fail "$1: reading $len bytes at $4 from $2 failed"
		return 1
	fi
	if ! cmp -s "$3" "$out"; then
		fail "$1: $len bytes at $4 on $2 differ from what was written ($(cmp "$3" "$out" 2>&1 | head -n 1))"
		return 1
	fi
	pass "$1"
	return 0
}

# rc_sg_write SG FILE LBA BLKSZ: FILE (a multiple of BLKSZ) with WRITE(10).
rc_sg_write()
{
	local n
	n=$(($(rc_file_size "$2") / $4))
	sg_dd if="$2" of="/dev/$1" bs="$4" seek="$3" count="$n" bpt=$((65536 / $4)) \
		cdbsz=10 > "$RC_WORK/sg_dd.log" 2>&1 || {
		sed 's/^/#   sg_dd: /' "$RC_WORK/sg_dd.log"
		return 1
	}
}

# rc_sg_read SG OUT LBA BLOCKS BLKSZ
rc_sg_read()
{
	sg_dd if="/dev/$1" of="$2" bs="$5" skip="$3" count="$4" bpt=$((65536 / $5)) \
		cdbsz=10 > "$RC_WORK/sg_dd.log" 2>&1 || {
		sed 's/^/#   sg_dd: /' "$RC_WORK/sg_dd.log"
		return 1
	}
}

# ---------------------------------------------------------------------------
# Teardown

# rc_unlink_rmdir DIR...: remove the symbolic links in each DIR (a LUN's
# link to its backstore, a mapped LUN's to its LUN), then DIR itself.
rc_unlink_rmdir()
{
	local d l
	for d in "$@"; do
		[ -d "$d" ] || continue
		for l in "$d"/*; do
			[ -L "$l" ] && rm -f "$l"
		done
		rmdir "$d"
	done
}

# Remove every LIO object by hand (when targetcli could not): LUN links of
# ACLs, ACLs, LUNs, portals, TPGs and targets of tcm_loop and iSCSI, then
# every user backstore.  Never fails; rc_leftovers says what stayed.
rc_lio_purge()
{
	local fab t g a p d h
	for fab in "$RC_LOOPBACK" "$RC_ISCSI"; do
		[ -d "$fab" ] || continue
		for t in "$fab"/*.*; do
			[ -d "$t" ] || continue
			for g in "$t"/tpgt_*; do
				[ -d "$g" ] || continue
				echo 0 > "$g/enable"
				for a in "$g"/acls/*; do
					[ -d "$a" ] || continue
					rc_unlink_rmdir "$a"/lun_*
					rmdir "$a"
				done
				rc_unlink_rmdir "$g"/lun/lun_*
				for p in "$g"/np/*; do
					[ -d "$p" ] && rmdir "$p"
				done
				rmdir "$g"
			done
			rmdir "$t"
		done
	done 2>/dev/null
	for h in "$TARGET_CORE"/user_*; do
		[ -d "$h" ] || continue
		for d in "$h"/*/; do
			[ -d "$d" ] && rmdir "${d%/}"
		done
		rmdir "$h"
	done 2>/dev/null
	return 0
}

# Print one line per thing left behind; nothing when all is clean.
rc_leftovers()
{
	local d p
	for d in "$TARGET_CORE"/user_*; do
		[ -d "$d" ] && echo "configfs: ${d#"$CONFIGFS"/}"
	done
	for d in "$RC_LOOPBACK"/*.* "$RC_ISCSI"/*.*; do
		[ -d "$d" ] && echo "configfs: ${d#"$CONFIGFS"/}"
	done
	for d in /dev/uio*; do
		[ -e "$d" ] && echo "device node: $d"
	done
	tcmu_all_uio | while read -r d _; do
		echo "uio: $d"
	done
	for d in $(rc_lio_scsi_devs); do
		echo "SCSI device: $d"
	done
	for d in $(rc_iscsi_sessions); do
		echo "iSCSI session: $d"
	done
	p=$(rc_pidof tcmu-runner) && echo "process: tcmu-runner $p"
	p=$(rc_pidof iscsid) && echo "process: iscsid $p"
	return 0
}

# rc_teardown [quiet]
rc_teardown()
{
	local quiet=${1:-} err=() v p

	for p in "${RC_BG_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for v in "${RC_MOUNTS[@]}"; do
		if grep -qs " $v " /proc/mounts; then
			umount "$v" || umount -l "$v" || err+=("umount $v")
		fi
	done
	RC_MOUNTS=()
	if [ -n "$RC_ISCSI_USED" ]; then
		rc_iscsi_stop || err+=("iSCSI logout / iscsid stop")
		RC_ISCSI_USED=
	fi
	for p in "${RC_BG_PIDS[@]}"; do
		tcmu_wait_for 10 rc_pid_gone "$p" || kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	RC_BG_PIDS=()

	# targetcli removes everything while tcmu-runner still serves the
	# devices (the disks going away send SYNCHRONIZE CACHE).
	if rc_leftovers | grep -q '^configfs: '; then
		# Without a handler the commands of the disks going away
		# would wait for cmd_time_out: bring one back if possible.
		if [ "$quiet" == quiet ] && ! rc_runner_alive && ! rc_pidof tcmu-runner > /dev/null &&
			[ -n "$RC_LOGDIR" ] && rc_dbus_answers; then
			RC_RUNNER_PID=
			# shellcheck disable=SC2119 # no extra options
			rc_runner_start > /dev/null 2>&1
		fi
		if [ -z "$quiet" ]; then
			# clearconfig alone must leave nothing behind.
			if ! rc_tcli clearconfig confirm=True; then
				err+=("targetcli clearconfig failed")
			else
				v=$(rc_leftovers | grep '^configfs: ')
				[ -z "$v" ] || err+=("targetcli clearconfig left $(printf '%s' "$v" | tr '\n' ';')")
			fi
		fi
		# From the EXIT trap (perhaps on a timeout's SIGTERM, with
		# little time left), or after a failed clearconfig:
		# configfs directly.
		rc_lio_purge
	fi
	rc_tcli_stop
	if [ -n "$RC_RUNNER_PID" ]; then
		if ! rc_runner_stop 30; then
			err+=("tcmu-runner did not exit on SIGTERM within 30s")
		elif [ "$RC_RUNNER_RC" != 0 ]; then
			err+=("tcmu-runner exited with status $RC_RUNNER_RC on SIGTERM")
		fi
	fi
	rc_dbus_stop
	v=$(rc_leftovers)
	[ -z "$v" ] || err+=("left behind: $(printf '%s' "$v" | tr '\n' ';')")
	RC_TORN_DOWN=1
	[ "$quiet" == quiet ] && { rc_lio_purge; return 0; }
	if [ ${#err[@]} -eq 0 ]; then
		pass "teardown: targetcli clearconfig, tcmu-runner exit 0, no configfs object, uio node, SCSI device, session or daemon left"
	else
		fail "teardown: $(IFS=';'; echo "${err[*]}")"
		rc_runner_log_tail 20
	fi
	tcmu_log "test took $((SECONDS - RC_T0))s"
}
