#!/usr/bin/env bash
# One-shot set-up on a fresh Debian/Ubuntu machine: system packages, npm packages, build.
# Idempotent; safe to rerun. Set DCD_SKIP_APT=1 to skip the apt step (e.g. without root).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  dataset-fashion-mnist   # real images for configs/fashion-mnist.yaml and the IDX adapter tests
  libdnnl-dev             # oneDNN: the native CPU backend's kernel library
  g++ make python3        # node-gyp toolchain for the native addon
  chromium                # headless check that the HTML report renders; its SwiftShader is the software Vulkan device of the webgpu tests
  libvulkan1              # the Vulkan loader Dawn (npm package webgpu) opens: the webgpu backend on SwiftShader or a GPU driver
  slurm-wlm munge         # a real single-node Slurm for the --executor slurm tests (scripts/slurm/start.sh)
)

if [ "${DCD_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    # Another apt (unattended upgrades, a parallel set-up) may hold the dpkg lock: wait for it.
    for attempt in $(seq 1 60); do
      if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        break
      fi
      [ "$attempt" = 60 ] && { echo "setup.sh: apt-get install failed 60 times; see the messages above" >&2; exit 1; }
      echo "setup.sh: apt-get failed (lock held by another apt?); retrying in 10 s ($attempt/60)" >&2
      sleep 10
    done
  fi
fi

npm install --no-audit --no-fund
npm run build
