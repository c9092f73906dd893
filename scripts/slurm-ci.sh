#!/usr/bin/env bash
# The Slurm tests of `sweep --emit-slurm` on a real one-node Slurm cluster (docs/SCALE.md), as
# `.ci/run` runs them: installs Debian's slurm-wlm and munge when missing (as root, or with sudo),
# starts munged, slurmctld and slurmd for this host with a configuration for a container (no
# cgroups) under a temporary folder, waits for the node to be idle, then runs the ignored tests
# `scale::slurm_*` of compress-bench, which submit the emitted array and merge jobs with sbatch
# (a 2-task Tesseract sweep whose merged run must equal a single-process run, and the same with
# one array task cancelled mid-run by scancel and the job submitted again). The cluster is stopped
# and the folder removed at the end, whatever happened. A failure of any step fails the script.
#
# Usage: scripts/slurm-ci.sh   (from anywhere; CARGO_TARGET_DIR as for the other tests)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  echo "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
slurmctld -V

# One cluster at a time on this machine (fixed ports): wait for another run of this script.
exec 9>/tmp/occ-slurm-ci.lock
flock -w 600 9 || { echo "another slurm-ci.sh holds /tmp/occ-slurm-ci.lock" >&2; exit 1; }

work="$(mktemp -d /tmp/occ-slurm-ci.XXXXXX)"
chmod 755 "$work"
export SLURM_CONF="$work/slurm.conf"
node="$(hostname -s)"
munge_sock="$work/munge.socket"

cleanup() {
  set +e
  for f in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munged.pid"; do
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  sleep 1
  for f in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munged.pid"; do
    [ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
  done
  if [ "${keep_logs:-0}" = 1 ]; then
    for log in slurmctld.log slurmd.log; do
      echo "---- last lines of $log"; tail -n 30 "$work/$log" 2>/dev/null
    done
  fi
  rm -rf "$work"
}
trap 'keep_logs=1; cleanup' ERR
trap cleanup EXIT

# munge: its own key and socket under $work, so a munged of the machine is left alone.
mkdir -p "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 700 "$work/munge"; chmod 400 "$work/munge/munge.key"
munged --force --key-file="$work/munge/munge.key" --socket="$munge_sock" \
  --pid-file="$work/munged.pid" --log-file="$work/munged.log" --seed-file="$work/munge/seed"
for _ in $(seq 50); do [ -S "$munge_sock" ] && break; sleep 0.1; done

# The node as slurmd sees it (CPUs, sockets, memory), without its uptime.
node_line="$(slurmd -C | grep '^NodeName=' | sed 's/ UpTime=.*//')"
mkdir -p "$work/state" "$work/spool"
cat > "$SLURM_CONF" <<EOF
ClusterName=occci
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
$node_line State=UNKNOWN
PartitionName=ci Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
deadline=$(( $(date +%s) + 60 ))
until [ "$(sinfo -h -n "$node" -o %T 2>/dev/null | head -1)" = "idle" ]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "the node did not become idle in 60 s:" >&2
    sinfo >&2 || true
    false
  fi
  sleep 1
done
sinfo

export CARGO_TERM_COLOR=never
cargo test --release -p compress-bench --locked --test it slurm_ -- --ignored --test-threads=1 --nocapture
