#!/usr/bin/env bash
# A throwaway PostgreSQL for the Postgres store's tests (crates/clarion-store-postgres and
# the two-replica `clarion serve` tests): a cluster in a temp dir, run by a non-root user,
# listening on loopback only, with password (SCRAM) authentication so the tests also see
# what a wrong password does. Installs the Debian package when it is missing.
#
#     eval "$(bash scripts/postgres.sh start)"   # prints: export CLARION_TEST_POSTGRES=postgres://…
#     bash scripts/postgres.sh stop
#
# `start` is idempotent: a cluster already running is reused and its URL printed again.
# Everything but the export line goes to stderr. Fails loudly: CI must not skip these tests.
#
# Environment: CLARION_PG_DIR (default /tmp/clarion-postgres), CLARION_PG_PORT (default
# 54329), CLARION_PG_USER (the OS user running the server when started as root; default
# postgres, which the Debian package creates).
set -euo pipefail

dir="${CLARION_PG_DIR:-/tmp/clarion-postgres}"
port="${CLARION_PG_PORT:-54329}"
os_user="${CLARION_PG_USER:-postgres}"
db_user=clarion
data="$dir/data"
pwfile="$dir/password"

bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  echo "$found"
}

as_server_user() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u "$os_user" -- "$@"
  else
    "$@"
  fi
}

install() {
  if [[ -z $(bin) ]]; then
    echo "installing postgresql from Debian packages" >&2
    if [[ $(id -u) != 0 ]]; then
      echo "error: PostgreSQL is not installed and this user cannot apt-get install it" >&2
      exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  [[ -n $(bin) ]] || { echo "error: no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
}

url() {
  echo "postgres://$db_user:$(cat "$pwfile")@127.0.0.1:$port/postgres"
}

start() {
  install
  local pg
  pg=$(bin)
  mkdir -p "$dir"
  if [[ $(id -u) == 0 ]]; then chown "$os_user" "$dir"; fi
  chmod 700 "$dir"
  if [[ ! -f $data/PG_VERSION ]]; then
    # A random password per cluster: tests read it from the URL, nothing else knows it.
    as_server_user bash -c "umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > '$pwfile'"
    as_server_user "$pg/initdb" -D "$data" -U "$db_user" --pwfile="$pwfile" \
      --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >&2
  fi
  if ! as_server_user "$pg/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Many tests each make a database; fsync off: a throwaway cluster needs no durability.
    as_server_user "$pg/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2 \
      || { tail -n 30 "$dir/server.log" >&2; exit 1; }
  fi
  echo "PostgreSQL $("$pg/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $data)" >&2
  echo "export CLARION_TEST_POSTGRES=$(url)"
}

stop() {
  local pg
  pg=$(bin)
  if [[ -n $pg && -f $data/PG_VERSION ]]; then
    as_server_user "$pg/pg_ctl" -D "$data" -m fast -w stop >&2 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
