#!/usr/bin/env bash
# Start a single-node SLURM (slurmctld + slurmd + munge) on this Debian machine, for tests.
#
#   sudo slurm/local/start.sh        # installs the packages when missing, then starts the daemons
#
# Plain daemons, no systemd.  Two partitions on the one node: "cpu" (default) and "gpu" (no GRES:
# the GPU pool of a profile can target it, but no GPU is there).  Idempotent: when the daemons of a
# previous start are alive and the node is idle it returns at once.  Daemons run with stdio on
# /dev/null and every inherited descriptor closed, so a CI pipe that called us never hangs on them.
# Stop with slurm/local/stop.sh.
#
# Environment: QS_SLURM_CPUS   CPUs the node advertises (default: nproc)
#              QS_SLURM_WAIT_S seconds to wait for the node to become idle (default 60)
set -euo pipefail

log() { printf 'slurm-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, starts daemons)"
[[ -r /etc/debian_version ]] || die "needs a Debian-family system (apt-get); this is not one"

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
RUN_DIR=/run/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
NODE=$(hostname -s)
CPUS=${QS_SLURM_CPUS:-$(nproc)}
WAIT_S=${QS_SLURM_WAIT_S:-60}

# -- packages ------------------------------------------------------------------------------
need=()
for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # no service start from the maintainer scripts: we start plain daemons ourselves
    apt-get update -qq -o DPkg::Lock::Timeout=600 </dev/null >/dev/null
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi

# -- close every inherited descriptor above stderr, stdio on /dev/null, then exec ----------
detach() {
    local fd
    for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null || true
    done
    exec "$@" </dev/null >/dev/null 2>&1
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# -- munge ---------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating a munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! alive /run/munge/munged.pid; then
    log "starting munged"
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    ( detach runuser -u munge -- /usr/sbin/munged )
    for _ in $(seq 50); do [[ -S /run/munge/munge.socket.2 ]] && break; sleep 0.1; done
    [[ -S /run/munge/munge.socket.2 ]] || die "munged did not start (see /var/log/munge/munged.log)"
fi

# -- slurm.conf ----------------------------------------------------------------------------
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
real_mb=$(( mem_kb / 1024 * 8 / 10 ))          # RealMemory below MemTotal (slurmd checks it)
install -d -m 0755 "$CONF_DIR" "$RUN_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
new_conf=$(cat <<EOF
# written by quakescale slurm/local/start.sh -- a single-node test cluster
ClusterName=quakescale
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
ReturnToService=2
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${real_mb} State=UNKNOWN
PartitionName=cpu Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${NODE} Default=NO MaxTime=INFINITE State=UP
EOF
)
if [[ ! -f $CONF ]] || [[ "$(cat "$CONF")" != "$new_conf" ]]; then
    changed=1
    printf '%s\n' "$new_conf" >"$CONF"
else
    changed=0
fi

# -- daemons -------------------------------------------------------------------------------
if alive "$RUN_DIR/slurmctld.pid" && alive "$RUN_DIR/slurmd.pid" && ((changed)); then
    log "slurm.conf changed: reconfiguring"
    scontrol reconfigure >/dev/null 2>&1 || true
fi
if ! alive "$RUN_DIR/slurmctld.pid"; then
    log "starting slurmctld"
    ( detach /usr/sbin/slurmctld -f "$CONF" )
fi
if ! alive "$RUN_DIR/slurmd.pid"; then
    log "starting slurmd"
    ( detach /usr/sbin/slurmd -f "$CONF" -N "$NODE" )
fi

# -- wait until the node is idle -----------------------------------------------------------
t0=$SECONDS
resumed=0
while :; do
    state=$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*|drng*|fail*)
            if ((!resumed)); then
                scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi ;;
    esac
    if ((SECONDS - t0 > WAIT_S)); then
        die "node $NODE not idle after ${WAIT_S}s (state: ${state:-no answer}); see $LOG_DIR/slurmctld.log and slurmd.log"
    fi
    sleep 0.2
done
log "node $NODE is $state (partitions: cpu, gpu; $CPUS CPUs, ${real_mb} MB)"
