#!/bin/bash
# A real systemd 252 user manager and a real journald, in private mount and PID namespaces, for
# tests of the systemd unit and the daemon's notify/watchdog/journal behaviour on machines where
# systemd is not PID 1 (see shared notes: systemd-testing.md).
#
# Usage (as root):
#   unshare --mount --propagation private --pid --fork --mount-proc [--kill-child=SIGTERM] \
#       systemd-harness.sh WORKDIR COMMAND [ARG...]
#
# WORKDIR (created if missing) holds:
#   units/        unit files and drop-in directories, copied to the manager's unit directory
#   home/         $HOME of the manager (created)
#   journald.log, manager.log   their own output, shown when they fail to start
# The harness mounts a tmpfs on /run and /var/log (visible only in this namespace), creates what
# PID 1 normally creates, starts journald and `systemd --user`, then runs COMMAND with:
#   XDG_RUNTIME_DIR, HOME        so `systemctl --user` and `systemd-run --user` reach the manager
#   HARNESS_WORKDIR              WORKDIR (absolute)
#   HARNESS_JOURNAL_DIR          /run/log/journal (`journalctl --directory="$HARNESS_JOURNAL_DIR"`)
#   HARNESS_UNIT_DIR             the manager's unit directory (for units written later;
#                                run `systemctl --user daemon-reload` after)
# and these bash functions (exported):
#   wait_until SECS DESCRIPTION COMMAND...   poll COMMAND every 0.1 s; fail after SECS
#   unit_prop UNIT PROPERTY                 `systemctl --user show -P PROPERTY UNIT`
#   unit_journal UNIT [OPTIONS...]          the unit's journal as JSON lines: its processes' entries
#                                           (_SYSTEMD_UNIT=, not _SYSTEMD_USER_UNIT=: see its definition) and
#                                           the manager's messages about it (USER_UNIT=)
# and exits with COMMAND's status. On harness failure it exits 125 with a "harness: error:" line.
# On exit (also on SIGTERM/SIGINT) the manager and journald are stopped, every process left in
# the namespace is killed, and the cgroups the harness made are removed. Each run gets cgroups
# of its own, so several harnesses can run at the same time.
#
# Environment: HARNESS_SCENARIO_TIMEOUT (seconds, default 300) bounds COMMAND.

set -euo pipefail

readonly HARNESS_FAILURE=125
readonly STARTUP_TIMEOUT=30

log() { printf 'harness: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit "$HARNESS_FAILURE"
}

if [[ $# -lt 2 ]]; then
	die "usage: unshare --mount --propagation private --pid --fork --mount-proc $0 WORKDIR COMMAND [ARG...]"
fi
[[ $EUID -eq 0 ]] || die "must run as root (it mounts file systems and creates cgroups)"
# Mounting over /run outside a private namespace would hide the host's /run: refuse.
[[ $$ -eq 1 ]] || die "must be PID 1 of a new PID namespace; run it through: unshare --mount --propagation private --pid --fork --mount-proc $0 ..."

mkdir -p "$1"
WORKDIR=$(cd "$1" && pwd -P)
shift

journald_pid=
manager_pid=
created_cgroups=()
scenario_status=$HARNESS_FAILURE

# wait_until SECS DESCRIPTION COMMAND...: poll until COMMAND succeeds; false after SECS.
wait_until() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			printf 'harness: timed out after %ss waiting for %s\n' "$secs" "$what" >&2
			return 1
		fi
		sleep 0.1
	done
}

unit_prop() {
	systemctl --user show -P "$2" "$1"
}

# The unit's own output is labelled _SYSTEMD_UNIT= (journald derives it from the cgroup path, and
# this manager's cgroup is not under user@.service); the manager's messages about it USER_UNIT=.
unit_journal() {
	local unit=$1
	shift
	journalctl --directory="$HARNESS_JOURNAL_DIR" --no-pager --all -o json "$@" \
		"_SYSTEMD_UNIT=$unit" + "USER_UNIT=$unit" + "_SYSTEMD_USER_UNIT=$unit"
}

# A process we started is still there (not a zombie).
alive() {
	[[ -n $1 ]] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Wait up to SECS for PID to exit, then SIGKILL it.
stop_process() {
	local pid=$1 signal=$2 secs=$3
	alive "$pid" || return 0
	kill "-$signal" "$pid" 2>/dev/null || return 0
	local deadline=$((SECONDS + secs))
	while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
	if alive "$pid"; then
		log "pid $pid did not exit within ${secs}s after SIG$signal; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# Whether any process but this one is left in the namespace (no subshell: it would count).
others_left() {
	local proc
	for proc in /proc/[0-9]*; do
		[[ $proc == /proc/1 ]] || return 0
	done
	return 1
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	set +e
	if [[ -n $manager_pid ]]; then
		# The manager stops its units (each within its TimeoutStopSec=) and removes their cgroups.
		stop_process "$manager_pid" TERM 40
	fi
	if [[ -n $journald_pid ]]; then
		stop_process "$journald_pid" TERM 10
	fi
	# As PID 1 of this namespace, kill(-1) reaches every other process in it.
	kill -KILL -1 2>/dev/null
	local deadline=$((SECONDS + 10))
	while others_left && ((SECONDS < deadline)); do
		wait 2>/dev/null
		sleep 0.05
	done
	# Leave our cgroups, then remove them, deepest first.
	local i dir
	for ((i = ${#created_cgroups[@]} - 1; i >= 0; i--)); do
		dir=${created_cgroups[i]}
		echo $$ >"$(dirname "$dir")/cgroup.procs" 2>/dev/null
		find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
		[[ -d $dir ]] && log "warning: could not remove cgroup $dir"
	done
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A cgroup of our own in every hierarchy systemd uses, so that this manager's units do not mix
# with another harness's (or the host's) under the same parent.
own_cgroups() {
	local name=systemd-harness-$(cat /proc/sys/kernel/random/uuid)
	local id controllers path base dir
	while IFS=: read -r id controllers path; do
		base=
		if [[ $id == 0 && -z $controllers ]]; then
			# The unified (cgroup2) hierarchy: /sys/fs/cgroup itself, or .../unified in hybrid mode.
			if [[ -f /sys/fs/cgroup/cgroup.procs && -f /sys/fs/cgroup/cgroup.controllers ]]; then
				base=/sys/fs/cgroup
			elif [[ -f /sys/fs/cgroup/unified/cgroup.procs ]]; then
				base=/sys/fs/cgroup/unified
			fi
		elif [[ $controllers == name=systemd ]]; then
			base=/sys/fs/cgroup/systemd
		fi
		[[ -n $base ]] || continue
		dir=$base${path%/}/$name
		mkdir "$dir" || die "cannot create cgroup $dir"
		created_cgroups+=("$dir")
		echo $$ >"$dir/cgroup.procs" || die "cannot move the harness into cgroup $dir"
	done </proc/self/cgroup
	((${#created_cgroups[@]} > 0)) || die "no writable cgroup hierarchy found (/proc/self/cgroup: $(tr '\n' ' ' </proc/self/cgroup))"
}

# A unix socket file at $1 (PID 1 creates /run/systemd/inaccessible/sock).
make_socket() {
	if command -v python3 >/dev/null; then
		python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$1"
	else
		systemd-socket-activate --listen="$1" /bin/true >/dev/null 2>&1 &
		local pid=$!
		wait_until 5 "socket $1" test -S "$1" || true
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		[[ -S $1 ]]
	fi
}

show_log() {
	[[ -s $1 ]] && { log "--- $1 ---"; tail -n 40 "$1" | sed 's/^/harness:   /' >&2; }
	return 0
}

for tool in mount mknod mkfifo systemctl journalctl /lib/systemd/systemd /lib/systemd/systemd-journald; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

own_cgroups

# 1. Mount events must propagate inside this namespace (LoadCredential's mount otherwise leaves
#    an empty credentials directory). The namespace was made private first, so nothing leaks out.
mount --make-rshared / || die "mount --make-rshared / failed"

# 2. Fresh /run and /var/log; /run/systemd/system marks "booted with systemd".
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || die "cannot mount a tmpfs on /run"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/log || die "cannot mount a tmpfs on /var/log"
mkdir -p /run/systemd/system /run/systemd/journal /run/log/journal

# 3. What PID 1 creates: inaccessible nodes that ProtectHome=/ProtectKernel*=/InaccessiblePaths=
#    mount over masked paths (without them: 226/NAMESPACE).
inaccessible=/run/systemd/inaccessible
mkdir -p "$inaccessible"
mkdir -m 0000 "$inaccessible/dir"
install -m 0000 /dev/null "$inaccessible/reg"
mknod -m 0000 "$inaccessible/chr" c 0 0 || die "mknod $inaccessible/chr failed"
mknod -m 0000 "$inaccessible/blk" b 0 0 || die "mknod $inaccessible/blk failed"
mkfifo -m 0000 "$inaccessible/fifo"
make_socket "$inaccessible/sock" || die "cannot create $inaccessible/sock"
chmod 0000 "$inaccessible/sock"

# 4. journald (volatile storage in /run/log/journal: /var/log/journal does not exist).
/lib/systemd/systemd-journald </dev/null >"$WORKDIR/journald.log" 2>&1 &
journald_pid=$!
journald_up() {
	alive "$journald_pid" || {
		show_log "$WORKDIR/journald.log"
		die "systemd-journald exited during start-up"
	}
	[[ -S /run/systemd/journal/socket && -S /run/systemd/journal/stdout ]]
}
wait_until "$STARTUP_TIMEOUT" "journald's sockets in /run/systemd/journal" journald_up ||
	{ show_log "$WORKDIR/journald.log"; die "journald did not start"; }

# 5. The user manager. XDG_RUNTIME_DIR is not under /run/user: ProtectHome= masks that, and the
#    service would lose its notify socket.
export XDG_RUNTIME_DIR=/run/xdg0
export HOME=$WORKDIR/home
export HARNESS_WORKDIR=$WORKDIR
export HARNESS_JOURNAL_DIR=/run/log/journal
export HARNESS_UNIT_DIR=$HOME/.config/systemd/user
export SYSTEMD_PAGER= SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0 LC_ALL=C.UTF-8
unset DBUS_SESSION_BUS_ADDRESS NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID LISTEN_FDS LISTEN_PID \
	INVOCATION_ID JOURNAL_STREAM CREDENTIALS_DIRECTORY MANAGERPID
mkdir -m 0700 -p "$XDG_RUNTIME_DIR"
mkdir -p "$HARNESS_UNIT_DIR"
if [[ -d $WORKDIR/units ]]; then
	cp -R "$WORKDIR/units/." "$HARNESS_UNIT_DIR/"
fi

SYSTEMD_LOG_TARGET=journal /lib/systemd/systemd --user </dev/null >"$WORKDIR/manager.log" 2>&1 &
manager_pid=$!
manager_up() {
	alive "$manager_pid" || {
		show_log "$WORKDIR/manager.log"
		die "systemd --user exited during start-up (its messages are in the journal: journalctl --directory=/run/log/journal)"
	}
	[[ -S $XDG_RUNTIME_DIR/systemd/private ]]
}
wait_until "$STARTUP_TIMEOUT" "the user manager's socket $XDG_RUNTIME_DIR/systemd/private" manager_up ||
	{ show_log "$WORKDIR/manager.log"; die "the user manager did not start"; }
manager_booted() {
	local state
	state=$(systemctl --user is-system-running 2>/dev/null) || true
	case $state in
	running | degraded) return 0 ;;
	*) return 1 ;;
	esac
}
wait_until "$STARTUP_TIMEOUT" "the user manager to finish starting (is-system-running)" manager_booted ||
	die "the user manager did not finish starting: $(systemctl --user is-system-running 2>&1 || true)"

export -f wait_until unit_prop unit_journal

# 6. The scenario, bounded. In the background: bash runs a trap (SIGTERM from unshare's
#    --kill-child) only once a foreground command has finished, but interrupts `wait` at once.
timeout --kill-after=10 "${HARNESS_SCENARIO_TIMEOUT:-300}" "$@" &
scenario_pid=$!
set +e
wait "$scenario_pid"
scenario_status=$?
set -e
if ((scenario_status == 124)); then
	log "error: the scenario did not finish within ${HARNESS_SCENARIO_TIMEOUT:-300}s"
fi
exit "$scenario_status"
