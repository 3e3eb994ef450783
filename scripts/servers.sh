#!/usr/bin/env bash
# PostgreSQL and RabbitMQ for Reelay, in a local data folder, without systemd or containers.
#
#   scripts/servers.sh up [dev|test]        install what is missing, start both servers, wait until they answer
#   scripts/servers.sh down [dev|test]      stop this instance's servers (and nobody else's)
#   scripts/servers.sh env [dev|test]       print this instance's DATABASE_URL, AMQP_URL, REELAY_RABBITMQ_NODE, REELAY_STATE_DIR
#   scripts/servers.sh restart-rabbitmq|restart-postgres [dev|test]
#
# An instance is a profile plus its settings: REELAY_PORT_OFFSET (added to every default port), or REELAY_PG_PORT and
# REELAY_AMQP_PORT one by one, and REELAY_DATA_DIR (default .reelay in the checkout). Its state folder and RabbitMQ
# node name derive from them, so two checkouts, or two instances of one checkout on other ports, run side by side and
# each `down` stops only its own servers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${2:-dev}"
OFFSET="${REELAY_PORT_OFFSET:-0}"
case "$OFFSET" in ''|*[!0-9]*) echo "servers.sh: REELAY_PORT_OFFSET must be a whole number, not '$OFFSET'" >&2; exit 2 ;; esac

case "$PROFILE" in
    dev)  DEFAULT_PG=55432; DEFAULT_AMQP=5672; DB_NAME=reelay ;;
    test) DEFAULT_PG=55433; DEFAULT_AMQP=5673; DB_NAME=reelay_test ;;
    *) echo "servers.sh: unknown profile '$PROFILE' (use dev or test)" >&2; exit 2 ;;
esac
PG_PORT="${REELAY_PG_PORT:-$((DEFAULT_PG + OFFSET))}"
AMQP_PORT="${REELAY_AMQP_PORT:-$((DEFAULT_AMQP + OFFSET))}"
DIST_PORT=$((AMQP_PORT + 20000))
for port in "$PG_PORT" "$AMQP_PORT"; do
    case "$port" in ''|*[!0-9]*) echo "servers.sh: port '$port' is not a number" >&2; exit 2 ;; esac
done
if [ "$PG_PORT" -lt 1024 ] || [ "$PG_PORT" -gt 65535 ]; then echo "servers.sh: PostgreSQL port $PG_PORT is outside 1024..65535" >&2; exit 2; fi
if [ "$AMQP_PORT" -lt 1024 ] || [ "$AMQP_PORT" -gt 45535 ]; then
    echo "servers.sh: AMQP port $AMQP_PORT is outside 1024..45535 (RabbitMQ also listens on it + 20000)" >&2; exit 2
fi

# The instance: the profile alone on its default ports (.reelay/dev, .reelay/test), else the profile and its ports.
if [ "$PG_PORT" = "$DEFAULT_PG" ] && [ "$AMQP_PORT" = "$DEFAULT_AMQP" ]; then INSTANCE="$PROFILE"; else INSTANCE="$PROFILE-$PG_PORT-$AMQP_PORT"; fi
DATA_ROOT="${REELAY_DATA_DIR:-$ROOT/.reelay}"
mkdir -p "$DATA_ROOT"
DATA_ROOT="$(cd "$DATA_ROOT" && pwd)"
DATA="$DATA_ROOT/$INSTANCE"
PG_DATA="$DATA/postgres"
MQ_DATA="$DATA/rabbitmq"
# The node name is unique per data folder: another checkout's broker on the same port is never mistaken for ours.
NODE="reelay-$INSTANCE-$(printf '%s' "$DATA" | sha256sum | cut -c1-8)@localhost"

log() { echo "servers.sh[$INSTANCE]: $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_packages() {
    local missing=() package
    for package in librabbitmq-dev libpq-dev libcurl4-openssl-dev rabbitmq-server postgresql pkg-config curl; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
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

# The server's own user must be able to reach a data folder under the checkout.
open_path_to() {
    [ "$(id -u)" = 0 ] || return 0
    local d; d="$(dirname "$1")"
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done
}

# track_commit_timestamp lets the end-to-end tests order task history by commit, exactly, instead of by wall clock.
pg_options() { echo "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp -c max_connections=200 -c fsync=off -c track_commit_timestamp=on"; }

start_postgres() {
    local bin; bin="$(pg_bin)"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_DATA"
    open_path_to "$PG_DATA"
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        log "initdb in $PG_DATA"
        as_postgres "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if as_postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "postgres already running on $PG_PORT"
        if [ "$(psql_admin -tAc 'SHOW track_commit_timestamp')" != on ]; then
            log "restarting postgres with this script's settings"
            as_postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -m fast -w restart -o "$(pg_options)" >/dev/null
        fi
    else
        if listening "$PG_PORT"; then
            log "port $PG_PORT is taken by another process (another checkout or instance?); choose another with REELAY_PORT_OFFSET or REELAY_PG_PORT"
            exit 1
        fi
        as_postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 -o "$(pg_options)" start >/dev/null
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
    if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$MQ_DATA"; open_path_to "$MQ_DATA"; fi
    if rabbitmqctl_node status >/dev/null 2>&1; then
        log "rabbitmq already running on $AMQP_PORT"
        return
    fi
    local port
    for port in "$AMQP_PORT" "$DIST_PORT"; do
        if listening "$port"; then
            log "port $port is taken by another process (another checkout or instance?); choose another with REELAY_PORT_OFFSET or REELAY_AMQP_PORT"
            exit 1
        fi
    done
    # Every vhost's quorum queues hold file handles; the default 1024 wedges a busy test broker. Debian's wrapper
    # switches user through su, whose PAM session resets the limit, so as root we switch with setpriv instead.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
        (cd /var/lib/rabbitmq && mq_env HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
            /usr/lib/rabbitmq/bin/rabbitmq-server -detached) >"$MQ_DATA/log/console.log" 2>&1
    else
        mq_env rabbitmq-server -detached >"$MQ_DATA/log/console.log" 2>&1
    fi
    local _
    for _ in $(seq 1 120); do
        rabbitmqctl_node await_startup --timeout 5 >/dev/null 2>&1 && break
        sleep 1
    done
    rabbitmqctl_node await_startup --timeout 30 >/dev/null || { log "rabbitmq did not start; see $MQ_DATA/log"; exit 1; }
    log "rabbitmq up on 127.0.0.1:$AMQP_PORT (node $NODE)"
}

stop_rabbitmq() { rabbitmqctl_node stop >/dev/null 2>&1 || true; }

print_env() {
    printf 'export DATABASE_URL=%q\n' "postgresql://reelay@127.0.0.1:$PG_PORT/$DB_NAME"
    printf 'export AMQP_URL=%q\n' "amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
    printf 'export REELAY_RABBITMQ_NODE=%q\n' "$NODE"
    printf 'export REELAY_STATE_DIR=%q\n' "$DATA"
}

case "${1:-}" in
    up) ensure_packages; start_postgres; start_rabbitmq ;;
    down) stop_rabbitmq; stop_postgres; log "stopped" ;;
    env) print_env ;;
    restart-rabbitmq) rabbitmqctl_node stop_app >/dev/null; rabbitmqctl_node start_app >/dev/null; log "rabbitmq app restarted" ;;
    restart-postgres) as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -m fast -w restart -o "$(pg_options)" >/dev/null
        log "postgres restarted" ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
