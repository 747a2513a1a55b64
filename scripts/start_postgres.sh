#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the PostgreSQL data-source tests and benchmark.
#
# Installs the Debian `postgresql` package if no server binaries are found (needs root or sudo), creates a
# fresh data directory under /tmp, starts the server on a free loopback port (as the `postgres` user when run
# as root), creates the database `cleanroom` and prints shell lines for `eval`:
#     eval "$(bash scripts/start_postgres.sh)"     # sets CLEANROOM_PG_DSN (and CLEANROOM_PG_DATADIR)
# Everything else goes to stderr. Stop it with: pg_ctl -D "$CLEANROOM_PG_DATADIR" stop (as the same user).
set -euo pipefail

find_pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

PGBIN="$(find_pg_bin)"
if [ -z "$PGBIN" ]; then
  echo "start_postgres: installing the Debian postgresql package" >&2
  as_root apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
  PGBIN="$(find_pg_bin)"
fi
[ -n "$PGBIN" ] || { echo "start_postgres: no PostgreSQL server binaries after install" >&2; exit 1; }

RUN=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  RUN=(runuser -u postgres --)
fi

DATADIR="$(mktemp -d /tmp/cleanroom-pg.XXXXXX)"
PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
printf '%s\n' "$PASSWORD" > "$DATADIR.pw"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$DATADIR" "$DATADIR.pw"; fi
chmod 700 "$DATADIR"; chmod 600 "$DATADIR.pw"

"${RUN[@]}" "$PGBIN/initdb" -D "$DATADIR" -U postgres -E UTF8 --no-locale \
  --auth-local=trust --auth-host=scram-sha-256 --pwfile="$DATADIR.pw" >&2
rm -f "$DATADIR.pw"

started=""
for _ in 1 2 3 4 5; do
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  if "${RUN[@]}" "$PGBIN/pg_ctl" -D "$DATADIR" -l "$DATADIR/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATADIR" start >&2; then
    started=1; break
  fi
done
[ -n "$started" ] || { echo "start_postgres: server did not start, see $DATADIR/server.log" >&2; exit 1; }

"${RUN[@]}" "$PGBIN/createdb" -h "$DATADIR" -p "$PORT" -U postgres cleanroom >&2
echo "start_postgres: server on 127.0.0.1:$PORT, data dir $DATADIR" >&2
echo "export CLEANROOM_PG_DSN=postgresql://postgres:$PASSWORD@127.0.0.1:$PORT/cleanroom"
echo "export CLEANROOM_PG_DATADIR=$DATADIR"
