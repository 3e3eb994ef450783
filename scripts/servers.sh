#!/usr/bin/env bash
# PostgreSQL and RabbitMQ for Reelay, in a local data folder, without systemd or containers.
#
#   scripts/servers.sh up [dev|test]        install what is missing, start both servers, wait until they answer
#   scripts/servers.sh down [dev|test]      stop both
#   scripts/servers.sh env [dev|test]       print DATABASE_URL / AMQP_URL exports for that profile
#   scripts/servers.sh restart-rabbitmq|restart-postgres [dev|test]
#
# Profiles use different ports and folders so a running dev system and the test suite never meet.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${2:-dev}"

case "$PROFILE" in
    dev)  PG_PORT="${REELAY_PG_PORT:-55432}"; AMQP_PORT="${REELAY_AMQP_PORT:-5672}"; DB_NAME=reelay; NODE=rabbit@localhost ;;
    test) PG_PORT="${REELAY_PG_PORT:-55433}"; AMQP_PORT="${REELAY_AMQP_PORT:-5673}"; DB_NAME=reelay_test; NODE=rabbit-test@localhost ;;
    *) echo "servers.sh: unknown profile '$PROFILE' (use dev or test)" >&2; exit 2 ;;
esac
DATA="${REELAY_DATA_DIR:-$ROOT/.reelay}/$PROFILE"
PG_DATA="$DATA/postgres"
MQ_DATA="$DATA/rabbitmq"
DIST_PORT=$((AMQP_PORT + 20000))

log() { echo "servers.sh[$PROFILE]: $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_packages() {
    local missing=()
    dpkg -s librabbitmq-dev >/dev/null 2>&1 || missing+=(librabbitmq-dev)
    dpkg -s libpq-dev >/dev/null 2>&1 || missing+=(libpq-dev)
    dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || missing+=(libcurl4-openssl-dev)
    dpkg -s rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
    dpkg -s postgresql >/dev/null 2>&1 || missing+=(postgresql)
    dpkg -s pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} from Debian's packages"
        as_root apt-get update -qq
        # The packages' own init scripts must not start system-wide servers: we run our own.
        as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${missing[@]}" >/dev/null
        as_root service rabbitmq-server stop >/dev/null 2>&1 || true
    fi
}

pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }; done
    dirname "$(command -v pg_ctl)"
}

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
    local bin; bin="$(pg_bin)"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_DATA"
    # The data folder lives under the checkout; the postgres user must be able to reach it.
    [ "$(id -u)" = 0 ] && { d="$(dirname "$PG_DATA")"; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done; }
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        log "initdb in $PG_DATA"
        as_postgres "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if as_postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "postgres already running on $PG_PORT"
    else
        as_postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp -c max_connections=200 -c fsync=off" start >/dev/null
        log "postgres up on 127.0.0.1:$PG_PORT"
    fi
    psql_admin -tc "SELECT 1 FROM pg_roles WHERE rolname = 'reelay'" | grep -q 1 || psql_admin -c "CREATE ROLE reelay LOGIN SUPERUSER" >/dev/null
    psql_admin -tc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1 || psql_admin -c "CREATE DATABASE $DB_NAME OWNER reelay" >/dev/null
}

psql_admin() { psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }

stop_postgres() {
    local bin; bin="$(pg_bin)"
    [ -f "$PG_DATA/PG_VERSION" ] || return 0
    as_postgres "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
}

mq_env() {
    env RABBITMQ_MNESIA_BASE="$MQ_DATA/mnesia" RABBITMQ_LOG_BASE="$MQ_DATA/log" RABBITMQ_NODENAME="$NODE" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$DIST_PORT" \
        RABBITMQ_PID_FILE="$MQ_DATA/rabbit.pid" RABBITMQ_ENABLED_PLUGINS_FILE="$MQ_DATA/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$MQ_DATA/rabbitmq" "$@"
}

rabbitmqctl_node() { rabbitmqctl -q -n "$NODE" "$@"; }

start_rabbitmq() {
    mkdir -p "$MQ_DATA/mnesia" "$MQ_DATA/log"
    [ -f "$MQ_DATA/enabled_plugins" ] || echo "[]." > "$MQ_DATA/enabled_plugins"
    # Generous consumer timeout is the broker default (30 min); keep it. Quorum queues need no plugin.
    printf 'listeners.tcp.1 = 127.0.0.1:%s\n' "$AMQP_PORT" > "$MQ_DATA/rabbitmq.conf"
    [ "$(id -u)" = 0 ] && { chown -R rabbitmq:rabbitmq "$MQ_DATA"; d="$(dirname "$MQ_DATA")"; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done; }
    if rabbitmqctl_node status >/dev/null 2>&1; then
        log "rabbitmq already running on $AMQP_PORT"
    else
        # Every vhost's quorum queues hold file handles; the default 1024 wedges a busy test broker. Debian's wrapper
        # switches user through su, whose PAM session resets the limit, so as root we switch with setpriv instead.
        ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
            (cd /var/lib/rabbitmq && mq_env HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
                /usr/lib/rabbitmq/bin/rabbitmq-server -detached) >"$MQ_DATA/log/console.log" 2>&1
        else
            mq_env rabbitmq-server -detached >"$MQ_DATA/log/console.log" 2>&1
        fi
        local i
        for i in $(seq 1 120); do
            rabbitmqctl_node await_startup --timeout 5 >/dev/null 2>&1 && break
            sleep 1
        done
        rabbitmqctl_node await_startup --timeout 30 >/dev/null || { log "rabbitmq did not start; see $MQ_DATA/log"; exit 1; }
        log "rabbitmq up on 127.0.0.1:$AMQP_PORT (node $NODE)"
    fi
}

stop_rabbitmq() { rabbitmqctl_node stop >/dev/null 2>&1 || true; }

print_env() {
    echo "export DATABASE_URL=postgresql://reelay@127.0.0.1:$PG_PORT/$DB_NAME"
    echo "export AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
    echo "export REELAY_RABBITMQ_NODE=$NODE"
}

case "${1:-}" in
    up) ensure_packages; start_postgres; start_rabbitmq ;;
    down) stop_rabbitmq; stop_postgres; log "stopped" ;;
    env) print_env ;;
    restart-rabbitmq) rabbitmqctl_node stop_app >/dev/null; rabbitmqctl_node start_app >/dev/null; log "rabbitmq app restarted" ;;
    restart-postgres) as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -m fast -w restart \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp -c max_connections=200 -c fsync=off" >/dev/null; log "postgres restarted" ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
