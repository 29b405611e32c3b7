#!/usr/bin/env bash
# tocsin vs Prometheus Alertmanager, side by side on loopback (issue 8). See docs/performance.md.
#
#   benches/load/run.sh [--quick] [--duration SECS] [--alerts N] [--postgres URL]
#                       [--skip-build] [--only PARTS] [--keep]
#
# Builds tocsin (release) and the bench binaries, installs Debian's prometheus-alertmanager and wrk
# if missing, then, every server on 127.0.0.1 with fresh state for every workload:
#   load     three workloads x {tocsin on SQLite, Alertmanager[, tocsin on PostgreSQL]}:
#            distinct alerts one per request, distinct alerts 100 per request, the same alert
#            re-sent; wrk, 8 connections, 2 threads, --duration seconds each (15; --quick: 3).
#            tocsin gets POST /alerts/webhook/alertmanager/ (webhook v4 body), Alertmanager
#            POST /api/v2/alerts with the same labels. Records alerts/s, p50/p99 request latency
#            and the server's resident memory (VmRSS) at the end of the workload. The same
#            workloads also go to the HTTP ceiling (benches/src/bin/http_ceiling.rs): tocsin's
#            HTTP stack decoding the same body and storing nothing, the most any storage design
#            could take on this machine. Then the storage floor
#            (benches/src/bin/storage_floor.rs): the rows tocsin stored in the distinct
#            one-per-request load, copied in bulk into tables of the same schema, the database's
#            CPU time per alert (SQLite, and PostgreSQL with --postgres): a lower bound on storing
#            those rows, which the report sets beside what each distinct line leaves for storage.
#   latency  alert posted to tocsin -> notification at a local sink, through a stored
#            `ingest -> notify` definition with the webhook driver: idle (once the machine's load
#            has settled), then under the distinct one-per-request load. p50/p90/p99
#            (benches/src/bin/latency_probe.rs).
#   pipeline the same probe through the default pipeline (ingest, checks, local analysis, notify
#            to a webhook channel), once the machine's load has settled; p50/p90/p99.
#   memory   resident memory after --alerts distinct alerts (1,000,000; --quick: 20,000) sent in
#            batches of 100, for tocsin (and Alertmanager for comparison).
# --only takes a comma-separated subset of load,latency,pipeline,memory. --postgres URL (a server where
# this user may CREATE DATABASE) adds tocsin on PostgreSQL to the load part, each workload on a new
# database that is dropped afterwards. --keep leaves the temporary directory (logs, databases).
# Before any server starts it times the disk under the databases (the fsync of a 4 KiB write).
# Prints a table and writes benches/load/results.json. Every process it starts is stopped by pid
# on exit.
set -euo pipefail

DURATION=""
ALERTS=""
QUICK=0
PG_URL=""
SKIP_BUILD=0
KEEP=0
ONLY="load,latency,pipeline,memory"
CONNECTIONS=8
THREADS=2

usage() { sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --duration) DURATION="$2"; shift ;;
        --alerts) ALERTS="$2"; shift ;;
        --postgres) PG_URL="$2"; shift ;;
        --skip-build) SKIP_BUILD=1 ;;
        --only) ONLY="$2"; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$DURATION" ]; then DURATION=$([ "$QUICK" = 1 ] && echo 3 || echo 15); fi
if [ -z "$ALERTS" ]; then ALERTS=$([ "$QUICK" = 1 ] && echo 20000 || echo 1000000); fi
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
LUA="$HERE/alerts.lua"
RESULTS="$HERE/results.json"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-load.XXXXXX")"
OUT="$WORK/out"
mkdir -p "$OUT"

# shellcheck source=benches/load/common.sh
. "$HERE/common.sh"
CREATED_DBS=()
cleanup() {
    local rc=$? db
    stop_all
    for db in "${CREATED_DBS[@]+"${CREATED_DBS[@]}"}"; do
        psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    done
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# ---- tools ------------------------------------------------------------------------------------
need=()
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v wrk >/dev/null || need+=(wrk)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if [ -n "$PG_URL" ] && ! command -v psql >/dev/null; then need+=(postgresql-client); fi
# Debian's prometheus-alertmanager enables a systemd service; nothing starts it in a container,
# and on a systemd machine it listens on :9093, which this script does not use.
install_missing "${need[@]+"${need[@]}"}"

# ---- the disk ---------------------------------------------------------------------------------
# How long the disk under the databases takes to make one written page durable (write 4 KiB, then
# time the fsync; up to 200 times or 5 s), on the quiet machine before any server starts. SQLite's
# checkpoints wait for it, and the under-load latency line with them: it held on one machine
# (about 0.1 ms) and not on another (20 to 80 ms) with the same build (docs/performance.md).
python3 - "$WORK" >"$OUT/disk.json" <<'EOF'
import json, os, sys, time
path = os.path.join(sys.argv[1], "sync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
page = os.urandom(4096)
took = []
deadline = time.monotonic() + 5
try:
    while len(took) < 200 and time.monotonic() < deadline:
        os.pwrite(fd, page, (len(took) % 64) * 4096)
        t = time.perf_counter()
        os.fsync(fd)
        took.append((time.perf_counter() - t) * 1000)
finally:
    os.close(fd)
    os.unlink(path)
took.sort()
rank = lambda p: round(took[max(0, -(-len(took) * p // 100) - 1)], 3)
print(json.dumps({"dir": sys.argv[1], "samples": len(took),
                  "fsync_ms": {"p50": rank(50), "p99": rank(99), "max": round(took[-1], 3)}}))
EOF

TOCSIN="$ROOT/target/release/tocsin"
PROBE="$ROOT/target/release/latency_probe"
CEILING="$ROOT/target/release/http_ceiling"
FLOOR="$ROOT/target/release/storage_floor"
if [ "$SKIP_BUILD" = 0 ]; then
    log "building tocsin, the latency probe, the HTTP ceiling and the storage floor (release)"
    (cd "$ROOT" && cargo build --release --bin tocsin &&
        cargo build --release -p tocsin-benches --bin latency_probe --bin http_ceiling \
            --bin storage_floor)
fi

# ---- servers ----------------------------------------------------------------------------------
SINK_PID=""
start_am_sink() { # a sink for Alertmanager's webhook receiver: answers 200 to anything
    AM_SINK_PORT=$(free_port)
    python3 - "$AM_SINK_PORT" >"$WORK/am-sink.log" 2>&1 <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
    SINK_PID=$!
    PIDS+=("$SINK_PID")
}

SERVER_PID=""
SERVER_URL=""
start_tocsin() { # name database_url [definition]: fresh tocsin serve
    local name="$1" db="$2" def="${3:-}" port
    port=$(free_port)
    TOCSIN_DATABASE_URL="$db" TOCSIN_BIND="127.0.0.1:$port" TOCSIN_WEBHOOK_DEFINITION="$def" \
        "$TOCSIN" serve >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    SERVER_URL="http://127.0.0.1:$port"
    wait_http "$SERVER_URL/healthz" "tocsin ($name)" "$SERVER_PID"
    INTAKE="$SERVER_URL/alerts/webhook/alertmanager/"
    FORMAT=tocsin
}
start_alertmanager() { # name: fresh Alertmanager (memory only, no cluster)
    local name="$1" port dir="$WORK/$1"
    mkdir -p "$dir"
    port=$(free_port)
    cat >"$dir/alertmanager.yml" <<EOF
route:
  receiver: sink
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:$AM_SINK_PORT/hook
        send_resolved: false
EOF
    prometheus-alertmanager --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
        --web.listen-address="127.0.0.1:$port" --cluster.listen-address= \
        >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    SERVER_URL="http://127.0.0.1:$port"
    wait_http "$SERVER_URL/-/ready" "alertmanager ($name)" "$SERVER_PID"
    INTAKE="$SERVER_URL/api/v2/alerts"
    FORMAT=alertmanager
}
start_ceiling() { # name: the HTTP ceiling (decodes tocsin's webhook body, stores nothing)
    local name="$1" port
    port=$(free_port)
    "$CEILING" --bind "127.0.0.1:$port" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    SERVER_URL="http://127.0.0.1:$port"
    wait_http "$SERVER_URL/healthz" "http ceiling ($name)" "$SERVER_PID"
    INTAKE="$SERVER_URL/alerts/webhook/alertmanager/"
    FORMAT=tocsin
}
PG_DB_URL=""
pg_fresh_db() { # name: a new database on the --postgres server, its URL in PG_DB_URL (not in a
    # subshell, so that cleanup knows to drop it)
    local name="tocsin_load_$$_$1"
    export PGOPTIONS="-c client_min_messages=warning"
    psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $name" >/dev/null
    psql -q "$PG_URL" -c "CREATE DATABASE $name" >/dev/null
    CREATED_DBS+=("$name")
    PG_DB_URL=$(python3 -c 'import sys, urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$PG_URL" "$name")
}
start_server() { # target workload
    case "$1" in
        tocsin_sqlite) mkdir -p "$WORK/$1-$2"; start_tocsin "$1-$2" "sqlite://$WORK/$1-$2/tocsin.db" ;;
        tocsin_postgres) pg_fresh_db "${2//-/_}"; start_tocsin "$1-$2" "$PG_DB_URL" ;;
        alertmanager) start_alertmanager "$1-$2" ;;
        http_ceiling) start_ceiling "$1-$2" ;;
    esac
}

WRK_PID=""
spawn_wrk() { # out mode batch prefix duration [VAR=value...]: wrk against $INTAKE in $FORMAT, in
    # the background (WRK_PID is wrk's own pid)
    local out="$1" mode="$2" batch="$3" prefix="$4" duration="$5"
    shift 5
    env LOAD_FORMAT="$FORMAT" LOAD_MODE="$mode" LOAD_BATCH="$batch" LOAD_PREFIX="$prefix" \
        LOAD_OUT="$out" LOAD_THREADS="$THREADS" "$@" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${duration}s" --timeout 10s -s "$LUA" "$INTAKE" \
        >"$out.txt" 2>&1 &
    WRK_PID=$!
    PIDS+=("$WRK_PID")
}
wait_wrk() { # wait for WRK_PID to finish on its own
    wait "$WRK_PID" || log "wrk exited with status $?"
    forget_pid "$WRK_PID"
}
run_wrk() { spawn_wrk "$@"; wait_wrk; }

runs_json() { # target workload: that tocsin's pipeline runs by end status, as JSON (null for others).
    # Read as the load ends: the intake rate stores every run, and this shows how many the workers
    # had finished by then and how many wait in the (durable) queue
    # (a run's status moves on node by node before it ends: "open" is every run not ended yet)
    local q="SELECT CASE WHEN completed_at IS NULL THEN 'open' ELSE status END, COUNT(*) FROM pipeline_runs GROUP BY 1"
    case "$1" in
        tocsin_sqlite) python3 -c 'import json, sqlite3, sys
print(json.dumps(dict(sqlite3.connect(sys.argv[1], timeout=10).execute(sys.argv[2]).fetchall())))' \
            "$WORK/$1-$2/tocsin.db" "$q" 2>/dev/null || echo null ;;
        tocsin_postgres) psql -At -F ' ' "$PG_DB_URL" -c "$q" 2>/dev/null | python3 -c 'import json, sys
print(json.dumps({k: int(v) for k, v in (l.split() for l in sys.stdin if l.strip())}))' || echo null ;;
        *) echo null ;;
    esac
}

# ---- load -------------------------------------------------------------------------------------
WORKLOADS=("distinct-1:distinct:1" "distinct-100:distinct:100" "same-1:same:1")
TARGETS=(tocsin_sqlite alertmanager)
[ -n "$PG_URL" ] && TARGETS+=(tocsin_postgres)
TARGETS+=(http_ceiling)
start_am_sink

PG_FLOOR_URL=""
if wants load; then
    for w in "${WORKLOADS[@]}"; do
        IFS=: read -r wname mode batch <<<"$w"
        for t in "${TARGETS[@]}"; do
            log "load: $wname -> $t (${DURATION} s)"
            start_server "$t" "$wname"
            run_wrk "$OUT/load-$t-$wname.json" "$mode" "$batch" "$wname" "$DURATION"
            printf '{"rss_kib": %s, "hwm_kib": %s, "loadavg_1m": %s, "runs": %s}\n' \
                "$(rss_kib "$SERVER_PID")" "$(hwm_kib "$SERVER_PID")" "$(cut -d' ' -f1 /proc/loadavg)" \
                "$(runs_json "$t" "$wname")" >"$OUT/load-$t-$wname.mem.json"
            stop_pid "$SERVER_PID"
            if [ "$t-$wname" = tocsin_postgres-distinct-1 ]; then PG_FLOOR_URL="$PG_DB_URL"; fi
        done
    done
    # The storage floor: the database's own work on the rows the distinct one-per-request load
    # stored (the same rows copied in bulk), set beside what each line leaves for storage in the
    # report.
    if [ -f "$WORK/tocsin_sqlite-distinct-1/tocsin.db" ]; then
        log "storage floor (SQLite): the distinct-1 load's rows, copied in bulk (3 copies)"
        "$FLOOR" --from "$WORK/tocsin_sqlite-distinct-1/tocsin.db" --copies 3 \
            --out "$OUT/storage-floor-sqlite.json" >&2 || log "the storage floor failed (status $?)"
    fi
    if [ -n "$PG_FLOOR_URL" ]; then
        log "storage floor (PostgreSQL): the distinct-1 load's rows, copied in bulk (3 copies)"
        "$FLOOR" --from "$PG_FLOOR_URL" --copies 3 \
            --out "$OUT/storage-floor-postgres.json" >&2 || log "the storage floor failed (status $?)"
    fi
fi

# ---- latency ----------------------------------------------------------------------------------
settle() { # phase: wait (up to 240 s) until the 1-minute load is below 0.6 per core, so that what
    # an earlier phase left running (PostgreSQL writing out the databases the load part dropped,
    # say) is not measured as this phase's latency. The margin matters for the default pipeline:
    # its local analysis measures CPU over a second once the load passes 1 per core, and a phase
    # started at 0.84 per core crossed that line with its own probes (eighth session). The load
    # it started at goes to $OUT/PHASE-loadavg.txt and to the log
    local phase="$1" cores i
    cores=$(nproc)
    for i in $(seq 240); do
        python3 -c 'import os,sys; sys.exit(0 if os.getloadavg()[0] < 0.6 * int(sys.argv[1]) else 1)' \
            "$cores" && break
        [ "$i" = 1 ] && log "$phase: waiting (up to 240 s) for the 1-minute load to drop below 0.6 per core"
        sleep 1
    done
    cut -d' ' -f1 /proc/loadavg >"$OUT/$phase-loadavg.txt"
}

if wants latency; then
    mkdir -p "$WORK/latency"
    DB="sqlite://$WORK/latency/tocsin.db"
    SINK_PORT=$(free_port)
    cat >"$WORK/latency/latency-probe.json" <<EOF
{"name": "latency-probe", "version": "1",
 "description": "benches/load: ingest, then a webhook to the latency probe's sink.",
 "nodes": [
  {"id": "ingest", "type": "ingest", "next": "notify"},
  {"id": "notify", "type": "notify",
   "config": {"driver": "webhook", "config": {"url": "http://127.0.0.1:$SINK_PORT/hook"}}}]}
EOF
    TOCSIN_DATABASE_URL="$DB" "$TOCSIN" definitions add "$WORK/latency/latency-probe.json" >&2
    settle latency
    start_tocsin latency "$DB" latency-probe
    SAMPLES=$([ "$QUICK" = 1 ] && echo 100 || echo 500)
    log "latency: idle, $SAMPLES probes (load average $(cat "$OUT/latency-loadavg.txt"))"
    "$PROBE" --tocsin "${SERVER_URL#http://}" --sink "127.0.0.1:$SINK_PORT" --samples "$SAMPLES" \
        --interval-ms 20 --timeout 10 --prefix idle --label idle --out "$OUT/latency-idle.json"
    log "latency: under the distinct one-per-request load (${DURATION} s)"
    spawn_wrk "$OUT/latency-load-wrk.json" distinct 1 latload "$DURATION"
    "$PROBE" --tocsin "${SERVER_URL#http://}" --sink "127.0.0.1:$SINK_PORT" --duration "$DURATION" \
        --interval-ms 50 --timeout 30 --prefix load --label load --out "$OUT/latency-load.json"
    wait_wrk
    stop_pid "$SERVER_PID"
fi

# ---- default pipeline -------------------------------------------------------------------------
# The default pipeline (ingest, checks from the rolling sampler, local analysis, notify) with one
# webhook channel pointing at the probe's sink. The local analysis measures CPU over a second
# when the machine is loaded (1-minute load above 1 per core), as it would on a real server in
# trouble; the probe waits for the load of the earlier phases to settle first, and says so.
if wants pipeline; then
    mkdir -p "$WORK/pipeline"
    DB="sqlite://$WORK/pipeline/tocsin.db"
    SINK_PORT=$(free_port)
    TOCSIN_DATABASE_URL="$DB" "$TOCSIN" channels add latency-sink --driver webhook \
        --json-config "{\"url\": \"http://127.0.0.1:$SINK_PORT/hook\"}" >&2
    settle pipeline
    start_tocsin pipeline "$DB"
    # Steady state: the CPU sampler's first reading comes 200 ms after start; until then a check
    # measures CPU on its own (250 ms), as it does on any freshly started server.
    sleep 1
    SAMPLES=$([ "$QUICK" = 1 ] && echo 50 || echo 200)
    log "default pipeline: $SAMPLES probes, one every 100 ms (load average $(cat "$OUT/pipeline-loadavg.txt"))"
    "$PROBE" --tocsin "${SERVER_URL#http://}" --sink "127.0.0.1:$SINK_PORT" --samples "$SAMPLES" \
        --interval-ms 100 --timeout 10 --prefix pipe --label pipeline --out "$OUT/latency-pipeline.json"
    stop_pid "$SERVER_PID"
fi

# ---- memory -----------------------------------------------------------------------------------
memory_probe() { # target
    local t="$1" done_dir="$WORK/done-$1" started
    mkdir -p "$done_dir"
    start_server "$t" memory
    log "memory: $ALERTS distinct alerts in batches of 100 -> $t"
    started=$(date +%s.%N)
    spawn_wrk "$OUT/memory-$t.json" distinct 100 mem 86400 \
        LOAD_MAX_REQUESTS=$(((ALERTS + 99) / 100)) LOAD_DONE_DIR="$done_dir"
    # wrk sleeps for its whole -d; its threads mark when they have sent their share, and SIGINT
    # then makes it report
    while [ "$(find "$done_dir" -type f | wc -l)" -lt "$THREADS" ]; do
        kill -0 "$WRK_PID" 2>/dev/null || break
        sleep 0.2
    done
    stop_pid "$WRK_PID" INT
    local secs rss hwm db_bytes=null
    secs=$(python3 -c "import sys,time; print(round(time.time()-float(sys.argv[1]),2))" "$started")
    rss=$(rss_kib "$SERVER_PID")
    hwm=$(hwm_kib "$SERVER_PID")
    sleep 5
    local rss5
    rss5=$(rss_kib "$SERVER_PID")
    if [ "$t" = tocsin_sqlite ]; then
        db_bytes=$(du -cb "$WORK/$t-memory"/tocsin.db* | tail -1 | cut -f1)
    fi
    printf '{"seconds": %s, "rss_kib": %s, "hwm_kib": %s, "rss_after_5s_kib": %s, "db_bytes": %s}\n' \
        "$secs" "$rss" "$hwm" "$rss5" "$db_bytes" >"$OUT/memory-$t.mem.json"
    stop_pid "$SERVER_PID"
}
if wants memory; then
    memory_probe tocsin_sqlite
    memory_probe alertmanager
fi

# ---- report -----------------------------------------------------------------------------------
python3 "$HERE/report.py" "$OUT" "$RESULTS" \
    --duration "$DURATION" --connections "$CONNECTIONS" --threads "$THREADS" --alerts "$ALERTS" \
    --tocsin-version "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo +dirty)" \
    --alertmanager-version "$(prometheus-alertmanager --version 2>&1 | head -1)"
log "wrote $RESULTS"
