#!/usr/bin/env bash
# Manage a private ClickHouse server for development and demos.
#
#   scripts/clickhouse.sh ensure                        install ClickHouse (and ZooKeeper, for tests) via apt if missing
#   scripts/clickhouse.sh start DIR TCP_PORT HTTP_PORT  run a server with everything under DIR
#   scripts/clickhouse.sh stop DIR                      stop the server started from DIR
#
# The server never touches /etc, /var/lib or /var/log and listens on
# 127.0.0.1 only, so it does not clash with a system ClickHouse
# (9000/8123/9009). No system service (systemd, init.d) is used.
#
# Targets ClickHouse 18.16 (Debian's clickhouse-server); the generated config
# also works with newer releases. $DORAFLOW_CLICKHOUSE_BIN overrides the server
# binary, as in internal/testenv.
set -euo pipefail

die() {
	echo "clickhouse.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# server_cmd sets SERVER to the command that runs the server: Debian ships a
# separate clickhouse-server (in /usr/sbin, often not in a user's PATH);
# upstream ships one multi-call `clickhouse` binary.
server_cmd() {
	local bin
	if [[ -n ${DORAFLOW_CLICKHOUSE_BIN:-} ]]; then
		[[ -x $DORAFLOW_CLICKHOUSE_BIN ]] || return 1
		bin=$DORAFLOW_CLICKHOUSE_BIN
	elif bin=$(command -v clickhouse-server) || bin=$(command -v /usr/sbin/clickhouse-server); then
		:
	elif ! bin=$(command -v clickhouse) && ! bin=$(command -v /usr/bin/clickhouse); then
		return 1
	fi
	if [[ $(basename "$bin") == clickhouse ]]; then
		SERVER=("$bin" server)
	else
		SERVER=("$bin")
	fi
}

# client_cmd sets CLIENT likewise for the client.
client_cmd() {
	local bin
	if bin=$(command -v clickhouse-client); then
		CLIENT=("$bin")
	elif bin=$(command -v clickhouse) || bin=$(command -v /usr/bin/clickhouse); then
		CLIENT=("$bin" client)
	else
		return 1
	fi
}

cmd_ensure() {
	local want=()
	if ! server_cmd || ! client_cmd; then
		[[ -z ${DORAFLOW_CLICKHOUSE_BIN:-} ]] || die "\$DORAFLOW_CLICKHOUSE_BIN=$DORAFLOW_CLICKHOUSE_BIN is not an executable"
		want+=(clickhouse-server clickhouse-client)
	fi
	# ZooKeeper coordinates the replicas of the clickhouse.cluster tests
	# (internal/testenv.ClickHouseReplicas); it is not needed to run doraflow.
	if [[ ! -f /usr/share/java/zookeeper.jar ]] || ! command -v java >/dev/null; then
		want+=(zookeeper)
	fi
	((${#want[@]})) || return 0
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null || die "${want[*]} not installed and installing needs root (no sudo found)"
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null || die "${want[*]} not installed and apt-get is not available; install them yourself"
	echo "clickhouse.sh: installing ${want[*]} with apt-get" >&2
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
	server_cmd && client_cmd || die "installed ClickHouse but cannot find its binaries"
}

# alive PID: the process exists and is not a zombie. The server is not our
# child after `start` returns, and in containers whose PID 1 does not reap,
# a dead server can linger as a zombie that `kill -0` still reports.
alive() {
	local state
	state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
	[[ -n $state && $state != Z ]]
}

# running DIR prints the pid from DIR/clickhouse.pid if that process is alive
# and is a ClickHouse server (guards against pid reuse).
running() {
	local pid
	pid=$(cat "$1/clickhouse.pid" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q clickhouse || return 1
	echo "$pid"
}

answers() { # PORT
	"${CLIENT[@]}" --host 127.0.0.1 --port "$1" -q 'SELECT 1' >/dev/null 2>&1
}

log_tail() { # DIR
	local f
	for f in "$1/log/clickhouse-server.err.log" "$1/log/stdout.log"; do
		if [[ -s $f ]]; then
			echo "--- $f (tail) ---" >&2
			tail -n 20 "$f" >&2
			return
		fi
	done
	echo "(server wrote no log in $1/log)" >&2
}

# write_config DIR TCP_PORT HTTP_PORT writes the smallest config 18.16
# accepts. Same shape as internal/testenv/clickhouse.go. Notes on 18.16:
#   - the root element is <yandex> (newer releases accept it too);
#   - mark_cache_size has no default: without it the server exits with
#     "Not found: mark_cache_size";
#   - directory paths need the trailing slash;
#   - a port is only opened if configured, so omitting interserver_http_port
#     means no 9009 clash (18.16 has no MySQL port at all);
#   - preprocessed configs are written under <path>, i.e. inside DIR.
write_config() {
	local dir=$1 tcp=$2 http=$3
	mkdir -p "$dir"/{data,tmp,log,user_files,format_schemas}
	cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$tcp</tcp_port>
    <http_port>$http</http_port>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <timezone>UTC</timezone>
</yandex>
EOF
	cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default></default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
EOF
}

cmd_start() {
	[[ $# -eq 3 ]] || usage
	local tcp=$2 http=$3 dir pid i
	[[ $tcp =~ ^[0-9]+$ && $http =~ ^[0-9]+$ ]] || die "ports must be numbers: $tcp $http"
	cmd_ensure
	mkdir -p "$1"
	dir=$(cd "$1" && pwd)
	[[ $dir != *[\<\>\&]* ]] || die "DIR must not contain < > &: $dir"

	if pid=$(running "$dir"); then
		# Already started (e.g. `make demo` re-run): give it the usual time to
		# come up, then leave it alone.
		for ((i = 0; i < 300; i++)); do
			answers "$tcp" && return 0
			sleep 0.1
		done
		die "server $pid from $dir/clickhouse.pid is running but not answering on 127.0.0.1:$tcp; run: $0 stop $dir"
	fi

	write_config "$dir" "$tcp" "$http"
	# setsid: a Ctrl-C aimed at make must not take the server down with it.
	# In a non-interactive script the child is not a group leader, so setsid
	# execs in place and $! is the server's pid.
	local detach=()
	command -v setsid >/dev/null && detach=(setsid)
	"${detach[@]}" "${SERVER[@]}" --config-file="$dir/config.xml" \
		>"$dir/log/stdout.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/clickhouse.pid"

	for ((i = 0; i < 300; i++)); do
		if answers "$tcp"; then
			return 0
		fi
		if ! alive "$pid"; then
			echo "clickhouse.sh: server exited during startup" >&2
			log_tail "$dir"
			rm -f "$dir/clickhouse.pid"
			exit 1
		fi
		sleep 0.1
	done
	echo "clickhouse.sh: server $pid did not answer on 127.0.0.1:$tcp within 30s" >&2
	log_tail "$dir"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$dir/clickhouse.pid"
	exit 1
}

cmd_stop() {
	[[ $# -eq 1 ]] || usage
	local dir=$1 pid i
	if pid=$(running "$dir"); then
		kill -TERM "$pid"
		# A graceful shutdown takes from a fraction of a second to a few.
		for ((i = 0; i < 300; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			echo "clickhouse.sh: server $pid ignored SIGTERM for 30s; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				alive "$pid" || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$dir/clickhouse.pid"
}

[[ $# -ge 1 ]] || usage
sub=$1
shift
case $sub in
ensure) cmd_ensure "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
*) usage ;;
esac
