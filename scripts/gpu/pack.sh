#!/usr/bin/env bash
# Packs what scripts/gpu/run.sh needs on a GPU machine with no network into one tarball:
# this Node binary, dcd built (dist/), its production node_modules with Dawn's `webgpu` and
# `@tensorflow/tfjs-backend-webgpu` (Dawn's other platforms' binaries dropped), the Vulkan loader
# (libvulkan.so.1) and the PyTorch peer script. PyTorch itself is not packed (CUDA wheels are
# gigabytes): run.sh uses the GPU machine's own Python with torch, or prints webgpu alone.
#
#   bash scripts/gpu/pack.sh [OUT.tar.gz]      # default: dcd-gpu.tar.gz in the current folder
#
# Run it after `npm install` and `npm run build` on a linux-x64 machine (scripts/setup.sh does both).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(realpath -m "${1:-dcd-gpu.tar.gz}")"
[ -f "$root/dist/bench/native-backends.js" ] || { echo "pack.sh: $root/dist is missing: run npm run build first" >&2; exit 1; }
[ -f "$root/node_modules/webgpu/dist/linux-x64/dawn.node" ] || { echo "pack.sh: node_modules/webgpu (Dawn) is missing: run npm install" >&2; exit 1; }
[ -d "$root/node_modules/@tensorflow/tfjs-backend-webgpu" ] || { echo "pack.sh: node_modules/@tensorflow/tfjs-backend-webgpu is missing: run npm install" >&2; exit 1; }
loader="$(ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')"
[ -n "$loader" ] || { echo "pack.sh: libvulkan.so.1 not found: apt-get install libvulkan1" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
d="$stage/dcd-gpu"
mkdir -p "$d/bin" "$d/lib" "$d/scripts/gpu" "$d/bench"
cp "$(command -v node)" "$d/bin/node"
cp -L "$loader" "$d/lib/libvulkan.so.1"
cp -r "$root/dist" "$root/package.json" "$d/"
cp "$root/bench/peers_torch.py" "$d/bench/"
cp "$root/scripts/gpu/run.sh" "$d/scripts/gpu/"
# production dependencies only, without the native addon's build tree or Dawn's other platforms
(cd "$root" && tar -cf - --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' --exclude='node_modules/typescript' --exclude='node_modules/vitest' \
  --exclude='node_modules/@vitest' --exclude='node_modules/esbuild' --exclude='node_modules/@esbuild' --exclude='node_modules/vite' \
  --exclude='node_modules/.cache' node_modules) | tar -xf - -C "$d"
echo "node $(node --version), Dawn webgpu $(node -p "require('$root/node_modules/webgpu/package.json').version"), tfjs-backend-webgpu $(node -p "require('$root/node_modules/@tensorflow/tfjs-backend-webgpu/package.json').version"), dcd $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), packed $(date -u +%FT%TZ)" > "$d/VERSIONS"
tar -czf "$out" -C "$stage" dcd-gpu
echo "pack.sh: wrote $out ($(du -h "$out" | cut -f1)); on the GPU machine: tar -xzf $(basename "$out") && bash dcd-gpu/scripts/gpu/run.sh"
