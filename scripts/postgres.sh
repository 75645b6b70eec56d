#!/usr/bin/env bash
# Manage a private PostgreSQL server, for the query benchmark's comparison.
#
#   scripts/postgres.sh ensure              install PostgreSQL via apt if missing
#   scripts/postgres.sh start DIR PORT      run a server with everything under DIR
#   scripts/postgres.sh stop DIR            stop the server started from DIR
#   scripts/postgres.sh version             print the server's version
#
# The server never touches /etc, /var/lib or /var/log, listens on 127.0.0.1
# only and trusts local connections as user postgres. No system service
# (systemd, init.d) is used. PostgreSQL refuses to run as root: as root, the
# server runs as the postgres user the Debian package creates, and DIR is
# given to it.
#
# Targets Debian's PostgreSQL 15; $DORAFLOW_PG_BINDIR overrides where
# initdb, pg_ctl and postgres are.
set -euo pipefail

die() {
	echo "postgres.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# bindir sets BINDIR to the directory of initdb and pg_ctl: Debian keeps
# them in /usr/lib/postgresql/VERSION/bin, outside PATH.
bindir() {
	local d
	if [[ -n ${DORAFLOW_PG_BINDIR:-} ]]; then
		[[ -x $DORAFLOW_PG_BINDIR/initdb ]] || return 1
		BINDIR=$DORAFLOW_PG_BINDIR
		return 0
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
			BINDIR=$d
			return 0
		fi
	done
	return 1
}

cmd_ensure() {
	if bindir && command -v psql >/dev/null; then
		return 0
	fi
	[[ -z ${DORAFLOW_PG_BINDIR:-} ]] || die "\$DORAFLOW_PG_BINDIR=$DORAFLOW_PG_BINDIR has no initdb"
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null || die "PostgreSQL is not installed and installing it needs root (no sudo found)"
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available; install postgresql yourself"
	echo "postgres.sh: installing postgresql with apt-get" >&2
	"${sudo[@]}" apt-get update -qq
	# The package would start a system cluster through its init scripts: a
	# policy-rc.d that answers 101 (action forbidden) stops that, and is
	# removed again unless one was there before.
	local policy=/usr/sbin/policy-rc.d placed=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		placed=1
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || {
		[[ -z $placed ]] || "${sudo[@]}" rm -f "$policy"
		die "apt-get install postgresql failed"
	}
	[[ -z $placed ]] || "${sudo[@]}" rm -f "$policy"
	bindir && command -v psql >/dev/null || die "installed PostgreSQL but cannot find its binaries"
}

# as_owner runs a command as the user that owns the server's files.
as_owner() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

cmd_start() {
	[[ $# -eq 2 ]] || usage
	local port=$2 dir
	[[ $port =~ ^[0-9]+$ ]] || die "port must be a number: $port"
	cmd_ensure
	mkdir -p "$1"
	dir=$(cd "$1" && pwd)
	if [[ $(id -u) -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "running as root and there is no postgres user to run the server as"
		chown postgres: "$dir"
		chmod 700 "$dir"
	fi
	if [[ ! -f $dir/data/PG_VERSION ]]; then
		as_owner "$BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; die "initdb failed"; }
	fi
	if as_owner "$BINDIR/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		return 0
	fi
	# The benchmark's settings: memory for in-memory sorts and a cache that
	# holds the facts, as a dedicated server would be tuned; the planner's
	# other defaults are kept.
	as_owner "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c shared_buffers=4GB -c work_mem=512MB -c maintenance_work_mem=1GB -c effective_cache_size=12GB -c max_wal_size=4GB -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
		start >/dev/null || { tail -n 20 "$dir/server.log" >&2; die "server did not start"; }
}

cmd_stop() {
	[[ $# -eq 1 ]] || usage
	local dir=$1
	bindir || return 0
	[[ -f $dir/data/PG_VERSION ]] || return 0
	if as_owner "$BINDIR/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		as_owner "$BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
	fi
}

cmd_version() {
	bindir || die "PostgreSQL is not installed; run: $0 ensure"
	"$BINDIR/postgres" --version
}

[[ $# -ge 1 ]] || usage
sub=$1
shift
case $sub in
ensure) cmd_ensure "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
version) cmd_version "$@" ;;
*) usage ;;
esac
