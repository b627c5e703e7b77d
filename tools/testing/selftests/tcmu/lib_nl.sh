#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the tests that talk generic netlink to the module through
# tcmu_nl_listener (tcmu_nl_events.sh, tcmu_nl_replies.sh, tcmu_attrs.sh).
# On top of lib.sh:
#
#   nl_init                 root, modules, the listener binary (NL_BIN), a
#                           scratch directory (NL_WORK), the EXIT trap;
#                           SET_FEATURES 0 and block_netlink=0, so nothing
#                           waits for a reply until a test asks for it
#   nl_start NAME [OPT...]  a listener ("tcmu_nl_listener listen OPT...")
#                           reporting to $NL_WORK/NAME.out (NL_OUT), run
#                           under "${NL_PREFIX[@]}"; NL_PID is its pid
#   nl_stop                 stop that listener
#   nl_line WHAT KIND N     wait for its line "KIND n=N ..." (NL_LINE)
#   nl_field VAR LINE KEY   one value of such a line
#
# The module parameters and the daemon flag are global: the EXIT trap
# stops every listener, announces SET_FEATURES 0 again, fails whatever
# still waits for a reply (block_netlink, reset_netlink), restores
# netlink_timeout and kills the background writers in BG_PIDS before the
# usual cleanup.  A test with more to undo sets NL_EXIT_HOOK to a function
# run first.
#
# shellcheck disable=SC2034 # variables here are used by the sourcing tests

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PARAMS=/sys/module/target_core_user/parameters
NL_BIN=
NL_WORK=
NL_PIDS=()
NL_PID=
NL_OUT=
NL_PREFIX=()
NL_LINE=
NL_SAVED_TIMEOUT=
NL_EXIT_HOOK=
BG_PIDS=()

nl_init()
{
	tcmu_setup
	NL_BIN=$(tcmu_helper tcmu_nl_listener) || tcmu_fatal "cannot build tcmu_nl_listener"
	NL_WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcmu-nl.XXXXXX") ||
		tcmu_fatal "cannot create a scratch directory"
	nl_value NL_SAVED_TIMEOUT "$PARAMS/netlink_timeout"
	[[ $NL_SAVED_TIMEOUT =~ ^[0-9]+$ ]] ||
		tcmu_fatal "netlink_timeout unreadable: $(tcmu_show "$NL_SAVED_TIMEOUT")"
	trap nl_exit EXIT
	mkfifo "$NL_WORK/fifo" || tcmu_fatal "mkfifo failed"
	nl_features 0 || tcmu_finish
	tcmu_write "$PARAMS/block_netlink" 0 ||
		tcmu_fatal "cannot clear block_netlink: $TCMU_ERR"
}

# shellcheck disable=SC2317 # the EXIT trap
nl_exit()
{
	local p
	[ -n "$NL_EXIT_HOOK" ] && "$NL_EXIT_HOOK"
	for p in "${NL_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${NL_PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [ -n "$NL_BIN" ]; then
		"$NL_BIN" features 0 > /dev/null 2>&1
		# Fail whatever still waits for a reply.
		tcmu_write "$PARAMS/block_netlink" 1
		tcmu_write "$PARAMS/reset_netlink" 1
		tcmu_write "$PARAMS/block_netlink" 0
	fi
	[ -n "$NL_SAVED_TIMEOUT" ] && tcmu_write "$PARAMS/netlink_timeout" "$NL_SAVED_TIMEOUT"
	for p in "${BG_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	tcmu_cleanup
	[ -n "$NL_WORK" ] && rm -rf "$NL_WORK"
	return 0
}

# nl_sleep SECONDS: sleep without running sleep(1): under TCG every exec
# costs a good fraction of a second.
nl_sleep()
{
	read -r -t "$1" <> "$NL_WORK/fifo"
}

# nl_value VAR FILE: VAR gets FILE's content without its trailing newline
# (tcmu_value without the command substitution's fork).
nl_value()
{
	local -n _nl_val=$1
	tcmu_read _nl_val "$2"
	_nl_val=${_nl_val%$'\n'}
}

# nl_write FILE STRING: tcmu_write, except that a string whose only
# newline is its last byte also goes out through bash's printf (bash's
# stdout is line buffered, so that is still a single write(2)) rather than
# dd, an exec.
nl_write()
{
	local err out
	if [ -z "$2" ] || [ ${#2} -gt 4096 ] || [[ ${2%$'\n'} == *$'\n'* ]]; then
		tcmu_write "$1" "$2"
		return
	fi
	err=${TMPDIR:-/tmp}/.tcmu-write.$BASHPID
	if { printf '%s' "$2" > "$1"; } 2> "$err"; then
		TCMU_ERR=
		return 0
	fi
	IFS= read -r out < "$err"
	TCMU_ERR=${out##*: }
	[ -n "$TCMU_ERR" ] || TCMU_ERR="unknown error"
	return 1
}

# nl_do VAR COMMAND...: run COMMAND with its output (stdout and stderr) in
# VAR, trailing newline dropped; returns COMMAND's status.
nl_do()
{
	local -n _nl_do=$1
	local _nl_rc=0
	shift
	"$@" > "$NL_WORK/do.txt" 2>&1 || _nl_rc=$?
	nl_value _nl_do "$NL_WORK/do.txt"
	return $_nl_rc
}

# nl_uio_count VAR REGEX: VAR gets the number of uio nodes whose name
# matches REGEX.
nl_uio_count()
{
	local -n _nl_uc=$1
	local _nl_u _nl_n
	_nl_uc=0
	for _nl_u in "$UIO_CLASS"/uio*; do
		tcmu_read _nl_n "$_nl_u/name" || continue
		[[ ${_nl_n%$'\n'} =~ $2 ]] && _nl_uc=$((_nl_uc + 1))
	done
}

# nl_features VALUE: one-shot SET_FEATURES, which must be acked.
nl_features()
{
	local out
	nl_do out "$NL_BIN" features "$1" && return 0
	fail "SET_FEATURES $1: $out"
	return 1
}

# nl_start NAME [OPTION...]: a listener reporting to $NL_WORK/NAME.out
# (NL_OUT), run under "${NL_PREFIX[@]}"; NL_PID is its pid.
nl_start()
{
	local name=$1 ready=$NL_WORK/$1.ready tries=100 err
	shift
	NL_OUT=$NL_WORK/$name.out
	: > "$NL_OUT"
	[ -e "$ready" ] && rm -f "$ready"
	"${NL_PREFIX[@]}" "$NL_BIN" listen -o "$NL_OUT" --ready "$ready" \
		--max-time 600 "$@" < /dev/null 2>> "$NL_WORK/$name.err" &
	NL_PID=$!
	NL_PIDS+=("$NL_PID")
	while [ ! -e "$ready" ]; do
		tries=$((tries - 1))
		if [ "$tries" -le 0 ]; then
			nl_value err "$NL_WORK/$name.err"
			fail "listener $name did not start: $err"
			return 1
		fi
		nl_sleep 0.1
	done
	return 0
}

# nl_stop: stop the last listener started.
nl_stop()
{
	kill -TERM "$NL_PID" 2>/dev/null
	wait "$NL_PID" 2>/dev/null
}

# nl_find VAR FILE REGEX: VAR gets the first line of FILE matching REGEX.
nl_find()
{
	local -n _nl_l=$1
	local _nl_line
	_nl_l=
	[ -f "$2" ] || return 1
	while IFS= read -r _nl_line; do
		if [[ $_nl_line =~ $3 ]]; then
			_nl_l=$_nl_line
			return 0
		fi
	done < "$2"
	return 1
}

# nl_wait VAR FILE REGEX SECONDS: wait for such a line.
nl_wait()
{
	local tries=$(($4 * 10))
	while ! nl_find "$1" "$2" "$3"; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		nl_sleep 0.1
	done
	return 0
}

# nl_count FILE REGEX: print the number of matching lines.
nl_count()
{
	local line n=0
	if [ -f "$1" ]; then
		while IFS= read -r line; do
			[[ $line =~ $2 ]] && n=$((n + 1))
		done < "$1"
	fi
	echo "$n"
}

# nl_field VAR LINE KEY: VAR gets the value of KEY=... in LINE (unescaped);
# returns 1 when there is no such key.
nl_field()
{
	local -n _nl_v=$1
	local _nl_w _nl_words
	_nl_v=
	read -r -a _nl_words <<< "$2"
	for _nl_w in "${_nl_words[@]}"; do
		if [ "${_nl_w%%=*}" == "$3" ]; then
			_nl_w=${_nl_w#*=}
			_nl_w=${_nl_w//\\/\\\\}
			printf -v _nl_v '%b' "${_nl_w//%/\\x}"
			return 0
		fi
	done
	return 1
}

# check_reads WHAT FILE TEXT: FILE reads TEXT plus a newline.
check_reads()
{
	local v
	tcmu_read v "$2"
	check_eq "$1" "$3"$'\n' "$v"
}

# shellcheck disable=SC2317 # called through check_false / check_true
readable()
{
	{ : < "$1"; } 2> /dev/null
}

nl_show_output()
{
	tcmu_log "listener output ($NL_OUT):"
	sed 's/^/#   /' "$NL_OUT" 2>/dev/null
}

# nl_line WHAT KIND N [SECONDS]: wait up to SECONDS (default 10) for line
# "KIND n=N ..." of $NL_OUT (KIND: event, reply, noreply, decoy) into
# NL_LINE; a failed check when it does not come.
nl_line()
{
	if nl_wait NL_LINE "$NL_OUT" "^$2 n=$3 " "${4:-10}"; then
		return 0
	fi
	fail "$1: no \"$2 n=$3\" line from the listener"
	nl_show_output
	return 1
}
