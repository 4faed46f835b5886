#!/bin/sh
# Stand-in for the official postgres image's docker-entrypoint.sh: the part of its contract that
# labctl relies on, no more.
#   - arguments starting with "-" are the server's: `postgres` is put in front of them;
#   - `postgres` with no cluster in $PGDATA (no PG_VERSION): initdb as $POSTGRES_USER (default
#     postgres) with the password from $POSTGRES_PASSWORD_FILE (or $POSTGRES_PASSWORD) and
#     $POSTGRES_INITDB_ARGS, then the server is started;
#   - with a cluster there, the server is started on it untouched.
# (Unlike upstream it runs no /docker-entrypoint-initdb.d scripts and never switches user: labctl
# runs the container as 999:999 and creates databases with community.postgresql.)
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    pwfile=$POSTGRES_PASSWORD_FILE
  elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  else
    echo "Error: Database is uninitialized and superuser password is not specified." >&2
    exit 1
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments, as upstream
  initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
  [ "$pwfile" = "${POSTGRES_PASSWORD_FILE:-}" ] || rm -f "$pwfile"
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
