#!/usr/bin/env bash
# A real single-node Slurm cluster for the tests, in a folder of its own: munged with a
# fresh key and slurmctld + slurmd from a generated slurm.conf, all on private ports and
# sockets so nothing on the machine is touched. Debian's slurm-wlm and munge.
#   slurm_cluster.sh start DIR   # prints the SLURM_CONF to export
#   slurm_cluster.sh stop DIR
set -euo pipefail
action=$1
dir=$(realpath -m "$2")

stop() {
  for f in slurmd slurmctld munged; do
    if [ -f "$dir/$f.pid" ]; then kill "$(cat "$dir/$f.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for f in slurmd slurmctld munged; do
    if [ -f "$dir/$f.pid" ]; then kill -9 "$(cat "$dir/$f.pid")" 2>/dev/null || true; rm -f "$dir/$f.pid"; fi
  done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi

mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
chmod 700 "$dir/munge"
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
# Ports from the folder's name, so two test runs side by side do not collide.
base=$(( 20000 + $(echo "$dir" | cksum | cut -d' ' -f1) % 20000 ))

/usr/sbin/mungekey --create --keyfile="$dir/munge/munge.key" --force 2>/dev/null ||
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$dir/munge/munge.key"
# --force: munged otherwise refuses to run as root or with a key under /tmp.
/usr/sbin/munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munge.seed"

cat > "$dir/slurm.conf" <<CONF
ClusterName=spinetest
SlurmctldHost=$host
SlurmctldPort=$base
SlurmdPort=$((base + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$dir/slurm.conf"
/usr/sbin/slurmctld -i -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF"
# Ready when the node takes jobs.
for _ in $(seq 1 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "slurm_cluster.sh: the node did not come up; slurmctld.log and slurmd.log:" >&2
tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
stop
exit 1
