#!/usr/bin/env bash
# A throw-away PostgreSQL cluster (Debian's postgresql package) in a scratch directory, reached
# only by its Unix socket in DIR/socket (no TCP), superuser `postgres` with trust authentication.
# The fleet test (scripts/check-fleet.sh) and the Swift tests of itb-forward (Tests/ITBForwardTests)
# use it. initdb refuses to run as root: as root the cluster runs as `nobody`.
#
#   scripts/pg-scratch.sh start DIR      # initdb on first use, then start; prints the socket directory
#   scripts/pg-scratch.sh stop DIR       # fast shutdown
#   scripts/pg-scratch.sh crash DIR      # immediate shutdown (as a crash: recovery at the next start)
#   scripts/pg-scratch.sh restart DIR    # crash, then start
#
# Clients: psql -h DIR/socket -U postgres postgres; itb-forward --postgres 'postgresql://postgres@/postgres?host=DIR/socket'
set -euo pipefail
command="${1:?usage: pg-scratch.sh start|stop|crash|restart DIR}"
dir="${2:?usage: pg-scratch.sh start|stop|crash|restart DIR}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "pg-scratch: PostgreSQL is not installed (apt-get install postgresql; scripts/test.sh installs it)" >&2
    exit 2
fi
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
data="$dir/data"
socket="$dir/socket"
log="$dir/postgres.log"

start() {
    if [ ! -d "$data" ]; then
        mkdir -p "$data" "$socket"
        touch "$log"
        if [ "$(id -u)" -eq 0 ]; then
            # nobody must reach the directory (mktemp makes it 0700) and own what it writes.
            chmod 755 "$dir"
            chown nobody "$data" "$socket" "$log"
        fi
        as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --no-instructions -E UTF8 --locale=C.UTF-8 >>"$log" 2>&1
    fi
    as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$socket' -c max_connections=50 -c shared_buffers=64MB" start >/dev/null
    echo "$socket"
}

stop() {
    local mode="$1"
    [ -f "$data/postmaster.pid" ] || return 0
    as_owner "$bin/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop >/dev/null
}

case "$command" in
    start) start ;;
    stop) stop fast ;;
    crash) stop immediate ;;
    restart) stop immediate; start ;;
    *) echo "pg-scratch: unknown command $command (start, stop, crash, restart)" >&2; exit 2 ;;
esac
