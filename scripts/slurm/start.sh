#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine: munged, slurmctld and slurmd, with
# every file under one folder, and waits until the node is idle. Installs nothing
# (scripts/setup.sh installs slurm-wlm and munge). Needs root (slurmd runs jobs as their
# submitter). Works in a container without systemd or cgroups (proctrack/linuxproc, task/none).
#
#   eval "$(bash scripts/slurm/start.sh)"     # prints `export SLURM_CONF=...` for the clients
#
# Settings (environment):
#   DCD_SLURM_DIR        folder for config, state, spool, logs, munge socket (default /tmp/dcd-slurm);
#                        its state and spool are wiped: the cluster starts with no jobs
#   DCD_SLURM_CTLD_PORT  slurmctld port (default 6817); slurmd uses the next one
#   DCD_SLURM_PARTITION  the partition's name (default debug)
#   DCD_SLURM_CPUS       CPUs the node offers (default: this machine's, from slurmd -C)
# Stop it with scripts/slurm/stop.sh (same DCD_SLURM_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${DCD_SLURM_DIR:-/tmp/dcd-slurm}"
ctld_port="${DCD_SLURM_CTLD_PORT:-6817}"
slurmd_port=$((ctld_port + 1))
partition="${DCD_SLURM_PARTITION:-debug}"

for b in munged mungekey slurmctld slurmd sinfo; do
  command -v "$b" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
  command -v "$b" >/dev/null 2>&1 || { echo "start.sh: $b not found; install slurm-wlm and munge (bash scripts/setup.sh)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "start.sh: must run as root (slurmd starts jobs as their submitting user)" >&2; exit 2; }
if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
  echo "start.sh: a cluster is already running from $dir; stop it first: DCD_SLURM_DIR=$dir bash $here/stop.sh" >&2
  exit 2
fi

host="$(hostname -s)"
hw="$(slurmd -C | head -1)"
cpus="${DCD_SLURM_CPUS:-$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")}"
mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
mem=$((mem * 9 / 10))   # leave slack: slurmd drains a node whose memory is below its configured value

rm -rf "$dir/state" "$dir/spool"
mkdir -p "$dir"/{munge,state,spool,log}
chmod 700 "$dir/munge"

# munge: its own key, socket and daemon, so nothing else on the machine is touched.
[ -s "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key" --bits=1024 >/dev/null 2>&1 \
  || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
chmod 600 "$dir/munge/munge.key"
if ! { [ -f "$dir/munge/munged.pid" ] && kill -0 "$(cat "$dir/munge/munged.pid")" 2>/dev/null; }; then
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
fi

sed -e "s|@HOST@|$host|g" -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
    -e "s|@USER@|$(id -un)|g" -e "s|@DIR@|$dir|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM_MB@|$mem|g" \
    -e "s|@PARTITION@|$partition|g" "$here/slurm.conf.in" > "$dir/slurm.conf"
export SLURM_CONF="$dir/slurm.conf"

slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"

for _ in $(seq 1 120); do
  st="$(sinfo -h -N -n "$host" -o '%t' 2>/dev/null || true)"
  [ "$st" = "idle" ] && { echo "export SLURM_CONF=$SLURM_CONF"; exit 0; }
  # A node left down/drained by an earlier run's state comes back on request.
  case "$st" in down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;; esac
  sleep 0.5
done
echo "start.sh: node $host did not become idle within 60 s (state: ${st:-none}); logs: $dir/log/" >&2
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1
