#!/bin/sh
# Stand-in for the official postgres image's docker-entrypoint.sh: the part of its contract that
# labctl relies on, no more.
#   - arguments starting with "-" are the server's: `postgres` is put in front of them;
#   - at every start of `postgres`: /var/run/postgresql gets mode 03775, and
#     $POSTGRES_PASSWORD_FILE, when named, is read (a missing file stops the container);
#   - `postgres` with no cluster in $PGDATA (no PG_VERSION): initdb as $POSTGRES_USER (default
#     postgres) with the password from $POSTGRES_PASSWORD_FILE (or $POSTGRES_PASSWORD) and
#     $POSTGRES_INITDB_ARGS, then the server is started;
#   - with a cluster there, the server is started on it untouched.
# (Unlike upstream it runs no /docker-entrypoint-initdb.d scripts and never switches user: labctl
# runs the container as 999:999 and creates databases with community.postgresql.)
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = postgres ]; then
  # As upstream, at every start: the socket directory's mode, and POSTGRES_PASSWORD_FILE read
  # (a name that is set but unreadable stops the container).
  mkdir -p /var/run/postgresql && chmod 03775 /var/run/postgresql || :
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  fi
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "Error: Database is uninitialized and superuser password is not specified." >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments, as upstream
  initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  echo "PostgreSQL init process complete; ready for start up."
fi
unset POSTGRES_PASSWORD
exec "$@"
