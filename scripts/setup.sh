#!/usr/bin/env bash
# One-shot set-up on a fresh Debian/Ubuntu machine: system packages, npm packages, build.
# Idempotent; safe to rerun. Set DCD_SKIP_APT=1 to skip the apt step (e.g. without root).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  dataset-fashion-mnist   # real images for configs/fashion-mnist.yaml and the IDX adapter tests
  libdnnl-dev             # oneDNN: the native CPU backend's kernel library
  g++ make python3        # node-gyp toolchain for the native addon
  chromium                # headless check that the HTML report renders
)

if [ "${DCD_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

npm install --no-audit --no-fund
npm run build
