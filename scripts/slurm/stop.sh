#!/usr/bin/env bash
# Stops the cluster scripts/slurm/start.sh started from DCD_SLURM_DIR (default /tmp/dcd-slurm):
# cancels its jobs, then ends slurmd, slurmctld and munged by the ids in their pid files.
set -uo pipefail
dir="${DCD_SLURM_DIR:-/tmp/dcd-slurm}"
export SLURM_CONF="$dir/slurm.conf"
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive "$dir/slurmctld.pid"; then
  scancel --quiet --full --user="$(id -un)" 2>/dev/null || true
  sleep 1
fi
for pf in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
  if alive "$pf"; then
    pid="$(cat "$pf")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pf"
done
exit 0
