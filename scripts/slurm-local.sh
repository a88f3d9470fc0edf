#!/usr/bin/env bash
# A single-node Slurm on the loopback interface, for tests: installs Debian's slurmctld, slurmd,
# slurm-client and munge when missing, starts munged, slurmctld and slurmd with a configuration
# in a fresh temporary folder (one node `localhost` at 127.0.0.1, proctrack/linuxproc, no
# cgroups, no accounting), runs the given command with SLURM_CONF pointing at it, and stops the
# daemons at the end, whatever the command did (a trap on EXIT).
#
#   scripts/slurm-local.sh COMMAND [ARG...]
#
# Needs root (it installs packages and starts daemons). The command's exit status is the
# script's. BILEVEL_SLURM_KEEP=1 keeps the temporary folder (logs) for inspection.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: needs root (installs packages, starts slurmctld, slurmd and munged)" >&2
    exit 2
fi

missing=()
for tool in slurmctld slurmd sbatch munged; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "slurm-local: installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

root="$(mktemp -d /tmp/slurm-local.XXXXXX)"
chmod 755 "$root"
mkdir -p "$root/state" "$root/spool" "$root/munge"
munge_socket="$root/munge/munge.socket.2"
pids=()

stop() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for log in "$root"/*.log; do
            [ -f "$log" ] || continue
            echo "---- $log (last 20 lines)" >&2
            tail -n 20 "$log" >&2 || true
        done
    fi
    if [ "${BILEVEL_SLURM_KEEP:-0}" = 1 ]; then
        echo "slurm-local: kept $root" >&2
    else
        rm -rf "$root"
    fi
    exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM

# munge: a fresh key, its own socket (no clash with a system munged).
dd if=/dev/urandom of="$root/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$root/munge/munge.key"
/usr/sbin/munged --force --key-file="$root/munge/munge.key" --socket="$munge_socket" \
    --pid-file="$root/munge/munged.pid" --log-file="$root/munge.log" --seed-file="$root/munge/seed"
for _ in $(seq 50); do
    [ -s "$root/munge/munged.pid" ] && break
    sleep 0.1
done
pids+=("$(cat "$root/munge/munged.pid")")

cpus="$(nproc)"
# Memory the node offers (MB, 90 % of the machine's), so that jobs may ask for --mem.
memory="$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
cat >"$root/slurm.conf" <<EOF
ClusterName=bilevel-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$root/state
SlurmdSpoolDir=$root/spool
SlurmctldPidFile=$root/slurmctld.pid
SlurmdPidFile=$root/slurmd.pid
SlurmctldLogFile=$root/slurmctld.log
SlurmdLogFile=$root/slurmd.log
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$root/slurm.conf"

/usr/sbin/slurmctld -f "$SLURM_CONF" -i
for _ in $(seq 100); do
    [ -s "$root/slurmctld.pid" ] && break
    sleep 0.1
done
pids+=("$(cat "$root/slurmctld.pid")")
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 100); do
    [ -s "$root/slurmd.pid" ] && break
    sleep 0.1
done
pids+=("$(cat "$root/slurmd.pid")")

# Wait for the node to be up.
for i in $(seq 300); do
    state="$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)"
    case "$state" in
        idle*|mixed*|allocated*) break ;;
    esac
    if [ "$i" -eq 300 ]; then
        echo "slurm-local: the node did not come up (state: ${state:-none})" >&2
        exit 1
    fi
    sleep 0.2
done
echo "slurm-local: one node up ($cpus CPUs, $memory MB), SLURM_CONF=$SLURM_CONF" >&2

"$@"
