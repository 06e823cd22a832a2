#!/bin/sh
# Stand-in entrypoint: on an empty $PGDATA, initialises it the way the official postgres image does.
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac

if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "postgres: set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags, as in the official image
  initdb --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"

  # The init scripts get a server on a private socket only, so the health check (pg_isready on the
  # usual socket) cannot pass before they are done.
  PGHOST=$(mktemp -d)
  export PGHOST PGUSER="$user" PGPASSWORD="${POSTGRES_PASSWORD:-}"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k $PGHOST" start
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -d postgres -c "create database \"$db\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "$0: running $f" && . "$f" ;;
      *.sql) echo "$0: running $f" && psql -v ON_ERROR_STOP=1 -d "$db" -f "$f" ;;
      *.sql.gz) echo "$0: running $f" && gunzip -c "$f" | psql -v ON_ERROR_STOP=1 -d "$db" ;;
      *) [ ! -e "$f" ] || echo "$0: ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  rmdir "$PGHOST"
  unset PGHOST PGUSER PGPASSWORD
  echo "$0: PostgreSQL init process complete; ready for start up."
fi

exec "$@"
