#!/usr/bin/env bash
# Instructions per alert on tocsin's intake path, counted by callgrind (issue 8). See
# docs/performance.md.
#
#   benches/load/profile.sh [--requests N] [--warmup N] [--only WORKLOADS] [--against OLD.json]
#                           [--skip-build] [--keep]
#
# For each workload, on a new SQLite file: starts `tocsin serve --no-worker` under
# `valgrind --tool=callgrind` with instrumentation off, sends --warmup requests (200; statements
# prepared, caches and the log's first pages filled), turns instrumentation on, sends --requests
# requests (2,000; distinct-100: a tenth) over one connection with wrk and the load harness's
# bodies (benches/load/alerts.lua), dumps the counts, stops the server by pid and prints
# instructions per alert by crate and the functions with most of their own
# (benches/load/callgrind.py). Writes benches/load/profile.json. Workloads (--only, all four by
# default): distinct-1 (distinct alerts one per request), distinct-100 (100 per request), same
# (one alert re-sent), ceiling (the re-sent alert to the HTTP ceiling,
# benches/src/bin/http_ceiling.rs: tocsin's HTTP stack decoding the body and storing nothing).
# --against an earlier profile.json (copied aside) prints each workload's change from it.
#
# Why: a rate on a shared two-core machine moves by a third between runs of the same build, so
# two builds compared by rate need many alternated runs; instruction counts repeat to a fraction
# of a percent. One connection makes every write its own transaction (the worst case for group
# commit, and the same in every run); without workers the webhook only queues its run, as it does
# under the load harness's rates. User-space instructions only: the kernel's work (a commit's
# `pwrite`s, the sockets) is not counted, and an instruction is not a fixed time (valgrind counts
# each byte of a `rep movsb` copy as one).
# Needs valgrind (installed with apt-get if missing) and wrk.
set -euo pipefail

REQUESTS=2000
WARMUP=200
ONLY="distinct-1,distinct-100,same,ceiling"
SKIP_BUILD=0
KEEP=0
AGAINST=""

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) REQUESTS="$2"; shift ;;
        --warmup) WARMUP="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --against) AGAINST="$2"; shift ;;
        --skip-build) SKIP_BUILD=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
LUA="$HERE/alerts.lua"
TOCSIN="$ROOT/target/release/tocsin"
CEILING="$ROOT/target/release/http_ceiling"
RESULTS="$HERE/profile.json"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-profile.XXXXXX")"

# shellcheck source=benches/load/common.sh
. "$HERE/common.sh"
cleanup() {
    local rc=$?
    stop_all 60
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_commands valgrind wrk curl
if [ "$SKIP_BUILD" = 0 ]; then
    log "building tocsin and the HTTP ceiling (release)"
    (cd "$ROOT" && cargo build --release --bin tocsin &&
        cargo build --release -p tocsin-benches --bin http_ceiling)
fi

SERVER_PID=""
send() { # url mode batch prefix requests first: that many requests over one connection to the
    # server SERVER_PID, the distinct alerts numbered from first, then stop
    local url="$1" mode="$2" batch="$3" prefix="$4" n="$5" first="$6" done_dir="$WORK/done-$4" out="$WORK/wrk-$4.json"
    mkdir -p "$done_dir"
    env LOAD_FORMAT=tocsin LOAD_MODE="$mode" LOAD_BATCH="$batch" LOAD_PREFIX="$prefix" \
        LOAD_FIRST="$first" LOAD_OUT="$out" LOAD_THREADS=1 LOAD_MAX_REQUESTS="$n" LOAD_DONE_DIR="$done_dir" \
        wrk -t1 -c1 -d86400s --timeout 60s -s "$LUA" "$url" >"$out.txt" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    # wrk sleeps for its whole -d once its thread has sent its share; SIGINT makes it report
    until [ -e "$done_dir/0" ]; do
        kill -0 "$pid" 2>/dev/null || { log "wrk ended early: $(cat "$out.txt")"; return 1; }
        kill -0 "$SERVER_PID" 2>/dev/null || { log "the server exited: see $WORK"; KEEP=1; return 1; }
        sleep 0.2
    done
    stop_pid "$pid" INT
    python3 - "$out" "$n" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
bad = sum(s["errors"].values())
if s["requests"] < int(sys.argv[2]) or bad:
    sys.exit(f"wrk: {s['requests']} requests, errors {s['errors']}: not every request was answered 2xx")
EOF
}

profile() { # workload
    local workload="$1" mode batch requests dir pid port url server
    port=$(free_port)
    url="http://127.0.0.1:$port"
    server=("$TOCSIN" serve --no-worker)
    case "$workload" in
        distinct-1) mode=distinct; batch=1; requests="$REQUESTS" ;;
        distinct-100) mode=distinct; batch=100; requests=$(((REQUESTS + 9) / 10)) ;;
        same) mode=same; batch=1; requests="$REQUESTS" ;;
        ceiling) mode=same; batch=1; requests="$REQUESTS"; server=("$CEILING" --bind "127.0.0.1:$port") ;;
        *) log "unknown workload $workload"; return 2 ;;
    esac
    dir="$WORK/$workload"
    mkdir -p "$dir"
    log "$workload: ${server[0]##*/} under callgrind on $url"
    TOCSIN_DATABASE_URL="sqlite://$dir/tocsin.db" TOCSIN_BIND="127.0.0.1:$port" RUST_LOG=warn \
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
        "${server[@]}" >"$dir/server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    SERVER_PID=$pid
    wait_http "$url/healthz" "${server[0]##*/} under callgrind" "$pid" 300
    send "$url/alerts/webhook/alertmanager/" "$mode" "$batch" "warm-$workload" "$WARMUP" 0
    callgrind_control --instr=on "$pid" >/dev/null
    # after the warm-up's alerts: a distinct alert is a new one, not an update of a warm-up's
    send "$url/alerts/webhook/alertmanager/" "$mode" "$batch" "run-$workload" "$requests" \
        $((WARMUP * batch))
    callgrind_control --dump="$workload" "$pid" >/dev/null
    callgrind_control --instr=off "$pid" >/dev/null
    stop_pid "$pid" TERM 60
    local dump
    dump=$(grep -l "^desc: Trigger: dump $workload\$" "$dir"/callgrind.out* | head -1 || true)
    if [ -z "$dump" ]; then
        log "no dump for $workload in $dir"
        return 1
    fi
    echo "== $workload: $requests requests of $batch alert(s)"
    python3 "$HERE/callgrind.py" "$dump" $((requests * batch)) --json "$dir/profile.json"
}

IFS=, read -r -a WORKLOADS <<<"$ONLY"
for w in "${WORKLOADS[@]}"; do profile "$w"; done
python3 - "$RESULTS" "$WORK" "${WORKLOADS[@]}" <<'EOF'
import json, os, platform, subprocess, sys
out, work, names = sys.argv[1], sys.argv[2], sys.argv[3:]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
json.dump({"commit": commit, "machine": {"cpu": cpu, "kernel": platform.release()},
           "workloads": {n: json.load(open(os.path.join(work, n, "profile.json"))) for n in names}},
          open(out, "w"), indent=1)
print(f"wrote {out}")
EOF
if [ -n "$AGAINST" ]; then python3 "$HERE/callgrind.py" --compare "$AGAINST" "$RESULTS"; fi
