#!/usr/bin/env bash
# Stop the single-node SLURM started by slurm/local/start.sh (slurmd, slurmctld, munged).
# Only the daemons named by their pid files are signalled.  Idempotent.
set -uo pipefail

log() { printf 'slurm-local: %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "error: must run as root"; exit 1; }

stop_pid() {  # NAME PIDFILE
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name ($pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not stop in 10 s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# cancel what is still queued so that a later start begins clean
if [[ -s /run/slurm/slurmctld.pid ]] && kill -0 "$(cat /run/slurm/slurmctld.pid)" 2>/dev/null; then
    scancel --full --quiet --user=root >/dev/null 2>&1 || true
fi
stop_pid slurmd /run/slurm/slurmd.pid
stop_pid slurmctld /run/slurm/slurmctld.pid
stop_pid munged /run/munge/munged.pid
exit 0
