#!/bin/sh
# PostGIS beside `cargo bench --bench city`: the same city of bays in a
# table with a GiST index, and the same question (the nearest free bays to a
# random point over the city) asked by pgbench.
#
#   benches/postgis/run.sh                       # 1,000,000 bays, 4 clients, 30 s
#   BAYS=200000 CLIENTS=2 DURATION=10 benches/postgis/run.sh
#   REUSE=1 benches/postgis/run.sh               # keep the loaded table
#
# Needs PostgreSQL 15 listening at PGHOST:PGPORT (default 127.0.0.1:5432)
# for PGUSER (default postgres) with the right to create a database;
# installs Debian's postgresql-15-postgis-3 when PostGIS is missing. Creates
# (and, without REUSE, recreates) the database BENCH_DB (kerbside_bench).
#
# Two queries, each for DURATION seconds with -M prepared:
#   knn   SELECT bay_id ... WHERE free ORDER BY geom <-> point LIMIT 20
#   full  the same with what kerbside answers: road, kind, maximum stay,
#         the outline as GeoJSON and the distance in metres
# Prints one JSON line per query with tps and latency p50/p99 (ms).
set -eu

BAYS=${BAYS:-1000000}
FREE_PERCENT=${FREE_PERCENT:-40}
CLIENTS=${CLIENTS:-4}
JOBS=${JOBS:-2}
DURATION=${DURATION:-30}
LIMIT=${LIMIT:-20}
BENCH_DB=${BENCH_DB:-kerbside_bench}
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y postgresql-15-postgis-3
fi

exists=$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$BENCH_DB'")
loaded=0
if [ "${REUSE:-0}" = 1 ] && [ "$exists" = 1 ]; then
    loaded=$(psql -d "$BENCH_DB" -tAc "SELECT count(*) FROM bays" 2>/dev/null || echo 0)
fi
if [ "$loaded" != "$BAYS" ]; then
    # Two -c, not one: psql sends a single -c holding several statements as
    # one transaction, and DROP DATABASE refuses to run inside one.
    psql -d postgres -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $BENCH_DB"
    psql -d postgres -qc "CREATE DATABASE $BENCH_DB"
    start=$(date +%s)
    psql -d "$BENCH_DB" -q -v bays="$BAYS" -v free_percent="$FREE_PERCENT" -f "$HERE/city.sql"
    echo "loaded $BAYS bays in $(($(date +%s) - start)) s" >&2
fi

# The point: random metres (in cm) over the city, to degrees in the frame.
set -- $(psql -d "$BENCH_DB" -tA -F ' ' -c \
    "SELECT (extent_m * 100)::bigint, lon0, lat0, m_per_deg_lon * 100, m_per_deg_lat * 100 FROM city")
EXTENT_CM=$1 LON0=$2 LAT0=$3 CM_PER_DEG_LON=$4 CM_PER_DEG_LAT=$5
POINT="ST_SetSRID(ST_Point(:lon, :lat), 4326)"
cat > "$WORK/point" <<SQL
\set x random(0, $EXTENT_CM)
\set y random(0, $EXTENT_CM)
\set lon $LON0 + :x / $CM_PER_DEG_LON
\set lat $LAT0 + :y / $CM_PER_DEG_LAT
SQL
{ cat "$WORK/point"; echo "SELECT bay_id FROM bays WHERE free ORDER BY geom <-> $POINT LIMIT $LIMIT;"; } > "$WORK/knn.sql"
{ cat "$WORK/point"; echo "SELECT bay_id, road_id, kind, max_stay_minutes, ST_AsGeoJSON(geom) AS geometry," \
    "round(ST_Distance(geom::geography, $POINT::geography)::numeric, 1) AS distance_m" \
    "FROM bays WHERE free ORDER BY geom <-> $POINT LIMIT $LIMIT;"; } > "$WORK/full.sql"

for q in knn full; do
    mkdir -p "$WORK/$q"
    (cd "$WORK/$q" && pgbench -n -M prepared -c "$CLIENTS" -j "$JOBS" -T "$DURATION" \
        -f "$WORK/$q.sql" -l "$BENCH_DB" > "$WORK/$q.out" 2>&1) || { cat "$WORK/$q.out"; exit 1; }
    grep -E "^(tps|latency average|number of transactions actually processed)" "$WORK/$q.out" >&2
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/$q.out")
    # Per-transaction logs: the third field is the latency in microseconds.
    cat "$WORK/$q"/pgbench_log.* | awk '{print $3}' | sort -n > "$WORK/$q.lat"
    count=$(wc -l < "$WORK/$q.lat")
    p50=$(awk -v n="$count" 'NR == int((n - 1) * 0.50 + 1.5) {printf "%.3f", $1 / 1000}' "$WORK/$q.lat")
    p99=$(awk -v n="$count" 'NR == int((n - 1) * 0.99 + 1.5) {printf "%.3f", $1 / 1000}' "$WORK/$q.lat")
    echo "{\"bench\":\"postgis\",\"query\":\"$q\",\"bays\":$BAYS,\"clients\":$CLIENTS,\"jobs\":$JOBS,\"seconds\":$DURATION,\"limit\":$LIMIT,\"queries\":$count,\"tps\":$tps,\"p50_ms\":$p50,\"p99_ms\":$p99}"
done
