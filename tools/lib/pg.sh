# A throw-away PostgreSQL cluster for scripts (tools/demo-nodes.sh, tools/bench/throughput.sh): initdb into a
# folder, a server on a unix socket there and no TCP, one database `tayori`. Sourced. As root, initdb and the
# server run as Debian's `postgres` user (initdb refuses root). The tests' own cluster is
# tests/support/pg_cluster.hpp.

# pg_start DIR [postgres -c settings...]: sets PG_URL (libpq keyword/value string) and PG_DIR.
pg_start() {
  PG_DIR=${1:?usage: pg_start DIR}
  shift
  PG_BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -x $PG_BINDIR/initdb ]] || { echo "pg.sh: no PostgreSQL in /usr/lib/postgresql (tools/setup.sh installs it)" >&2; return 1; }
  PG_AS=()
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PG_DIR"
    PG_AS=(runuser -u postgres --)
  fi
  local options="-k $PG_DIR -c listen_addresses=''" setting
  for setting in "$@"; do options+=" -c $setting"; done
  "${PG_AS[@]}" "$PG_BINDIR/initdb" -D "$PG_DIR/data" -A trust -U tayori --no-sync -E UTF8 --locale=C >"$PG_DIR/initdb.log" ||
    { cat "$PG_DIR/initdb.log" >&2; return 1; }
  "${PG_AS[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -o "$options" start >/dev/null ||
    { tail -20 "$PG_DIR/server.log" >&2; return 1; }
  "$PG_BINDIR/createdb" -h "$PG_DIR" -U tayori tayori
  PG_URL="host=$PG_DIR dbname=tayori user=tayori"
}

# pg_stop: stops the cluster pg_start started (immediate: nothing of it is kept).
pg_stop() {
  [[ -n ${PG_DIR:-} && -d $PG_DIR/data ]] || return 0
  "${PG_AS[@]}" "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
}
