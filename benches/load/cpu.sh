#!/usr/bin/env bash
# Two builds of tocsin compared by the server's CPU time per alert under the same load, in
# alternated runs (issue 8). See docs/performance.md.
#
#   benches/load/cpu.sh OLD_BINARY NEW_BINARY [--workload same|distinct-1|distinct-100]
#                       [--runs N] [--seconds S] [--workers]
#
# For each run and each binary in turn (old first, then new): starts `BINARY serve --no-worker`
# on a new SQLite file (with --workers: `serve`, its pipeline workers running the queued runs as
# under the load harness), sends 2 s of warm-up with the load harness's bodies
# (benches/load/alerts.lua, 8 connections, 2 threads), then --seconds (6) of the workload, and
# reads the server's user and system CPU time from /proc before and after. Prints each run's
# alerts/s and CPU microseconds per alert, then each binary's median and the change. Runs: 3.
#
# Why: on a shared two-core machine a rate moves by a third between two runs of one build, so a
# change of a few percent shows in neither one run nor the next. The server's CPU per alert moves
# less (the same load, the same bodies; what the other tenants take shows as a lower rate, not as
# more CPU), and alternating the builds spreads what drift remains over both. Without workers the
# figure is the intake's alone; with them, runs that finish during the measure count too, and
# the figure moves more.
# Needs wrk and curl (installed with apt-get if missing). Build each binary with
# `cargo build --release -p tocsin-cli --bin tocsin` and copy it aside.
set -euo pipefail

WORKLOAD=same
RUNS=3
SECONDS_=6
WORKERS=0
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 2 ] || { usage >&2; exit 2; }
OLD="$1" NEW="$2"
shift 2
while [ $# -gt 0 ]; do
    case "$1" in
        --workload) WORKLOAD="$2"; shift ;;
        --runs) RUNS="$2"; shift ;;
        --seconds) SECONDS_="$2"; shift ;;
        --workers) WORKERS=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$WORKLOAD" in
    same) MODE=same; BATCH=1 ;;
    distinct-1) MODE=distinct; BATCH=1 ;;
    distinct-100) MODE=distinct; BATCH=100 ;;
    *) echo "unknown workload: $WORKLOAD" >&2; exit 2 ;;
esac
for b in "$OLD" "$NEW"; do
    [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LUA="$HERE/alerts.lua"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-cpu.XXXXXX")"
# shellcheck source=benches/load/common.sh
. "$HERE/common.sh"
cleanup() {
    local rc=$?
    stop_all 30
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_commands wrk curl

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime

one_run() { # binary label run: prints "label alerts/s us-per-alert"
    local bin="$1" label="$2" run="$3" dir="$WORK/$2-$3" port pid url c0 c1 args=()
    mkdir -p "$dir"
    port=$(free_port)
    [ "$WORKERS" = 1 ] || args=(--no-worker)
    TOCSIN_DATABASE_URL="sqlite://$dir/tocsin.db" TOCSIN_BIND="127.0.0.1:$port" \
        "$bin" serve "${args[@]+"${args[@]}"}" >"$dir/server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/healthz" "$label" "$pid"
    url="http://127.0.0.1:$port/alerts/webhook/alertmanager/"
    LOAD_FORMAT=tocsin LOAD_MODE="$MODE" LOAD_BATCH="$BATCH" LOAD_PREFIX=warm \
        wrk -t2 -c8 -d2s -s "$LUA" "$url" >/dev/null
    c0=$(cpu_ticks "$pid")
    LOAD_FORMAT=tocsin LOAD_MODE="$MODE" LOAD_BATCH="$BATCH" LOAD_PREFIX=run \
        LOAD_OUT="$dir/wrk.json" wrk -t2 -c8 -d"${SECONDS_}s" -s "$LUA" "$url" >/dev/null
    c1=$(cpu_ticks "$pid")
    stop_pid "$pid" TERM 30
    python3 - "$dir/wrk.json" "$c0" "$c1" "$BATCH" "$TCK" "$label" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))
c0, c1, batch, tck, label = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
errors = sum(w["errors"].values())
if errors:
    sys.exit(f"{label}: {errors} errors in the run")
alerts = w["requests"] * batch
print(label, f"{alerts / (w['duration_us'] / 1e6):.0f}", f"{(c1 - c0) / tck / alerts * 1e6:.2f}")
PY
}

log "$WORKLOAD: $RUNS runs of ${SECONDS_} s per binary, alternated$([ "$WORKERS" = 1 ] && echo ', with workers')"
for run in $(seq "$RUNS"); do
    one_run "$OLD" old "$run" | tee -a "$WORK/results"
    one_run "$NEW" new "$run" | tee -a "$WORK/results"
done
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for label in ("old", "new"):
    rates = [float(r[1]) for r in rows if r[0] == label]
    cpus = [float(r[2]) for r in rows if r[0] == label]
    med[label] = (statistics.median(rates), statistics.median(cpus))
    print(f"{label}: median {med[label][0]:,.0f} alerts/s, {med[label][1]:.2f} us of CPU per alert "
          f"(runs: {', '.join(f'{c:.2f}' for c in cpus)})")
(ro, co), (rn, cn) = med["old"], med["new"]
print(f"new against old: CPU per alert {100 * (cn - co) / co:+.1f}%, rate {100 * (rn - ro) / ro:+.1f}%")
PY
