# Shell functions the scripts of benches/load share (sourced, not run): logging, and the processes
# a script starts, each recorded in PIDS and stopped by pid.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

PIDS=()
stop_pid() { # pid [signal] [seconds]: stop one process we started and wait for it (SIGKILL after
    # the seconds, 15 unless given)
    local pid="$1" sig="${2:-TERM}" secs="${3:-15}" i
    kill -s "$sig" "$pid" 2>/dev/null || true
    for i in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}
stop_all() { # [seconds]: stop every process we started (SIGTERM, SIGKILL after the seconds)
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p" TERM "${1:-15}"; done
}
forget_pid() { # a pid we started that has ended
    local keep=() p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() { # url name pid [seconds]: until the url answers 2xx (30 s unless given)
    local secs="${4:-30}" i
    for i in $(seq $((secs * 10))); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then log "$2 exited during start-up"; return 1; fi
        sleep 0.1
    done
    log "$2 did not answer $1 within $secs s"
    return 1
}

install_missing() { # package...: installs them with apt-get (through sudo unless root); nothing
    # when none is given
    [ $# -gt 0 ] || return 0
    log "installing $*"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@"
}
install_commands() { # command...: installs the missing ones, each from the package of its name
    local need=() c
    for c in "$@"; do command -v "$c" >/dev/null || need+=("$c"); done
    install_missing "${need[@]+"${need[@]}"}"
}
