#!/usr/bin/env bash
# On a GPU machine, from the tarball scripts/gpu/pack.sh wrote (no network needed): ResNet-50 and
# ViT-S/16 embedding (forward, 224 px) and a ResNet-50 training step (dcd's trainStep: forward,
# backward, SGD with momentum) on dcd's webgpu backend, beside PyTorch on the same GPU, as ratios.
#
#   tar -xzf dcd-gpu.tar.gz && bash dcd-gpu/scripts/gpu/run.sh [--batch 32] [--train-batch 32] [--iters 3]
#
# Needs: a GPU Vulkan driver (NVIDIA: the driver's nvidia_icd.json; AMD/Intel: Mesa's radv/anv);
# for the peer, a Python with torch + torchvision built for the GPU (PYTHON=/path/to/python,
# default python3); without it the webgpu figures print alone, with the reason. Results are
# also written to gpu-results-<date>.txt in the current folder.
# Also runs from a checkout (after npm install + npm run build): bash scripts/gpu/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
node="$here/bin/node"; [ -x "$node" ] || node="$(command -v node)"
batch=32; train_batch=32; iters=3
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) batch="$2"; shift 2 ;;
    --train-batch) train_batch="$2"; shift 2 ;;
    --iters) iters="$2"; shift 2 ;;
    *) echo "run.sh: unknown option $1 (expected --batch N, --train-batch N, --iters N)" >&2; exit 2 ;;
  esac
done
# the packed Vulkan loader, used only where the system has none
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' && [ -f "$here/lib/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
python="${PYTHON:-python3}"
out="gpu-results-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# dcd webgpu vs PyTorch, $(date -u +%FT%TZ), $(hostname)"
  [ -f "$here/VERSIONS" ] && cat "$here/VERSIONS"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$python" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")' 2>&1 || true
  echo "load: $(uptime)"
  # --backend webgpu by name: a software adapter (no GPU driver found) is then used too, and the
  # start-up line below says which adapter ran: check it names the GPU.
  DCD_LOG=info "$node" "$here/dist/bench/native-backends.js" --backends webgpu --train-backends webgpu \
    --rows resnet50-fwd,vit-fwd,resnet50-train --batch "$batch" --train-batch "$train_batch" --iters "$iters" \
    --torch-device cuda --python "$python" --threads "$(nproc)"
} 2>&1 | tee "$out"
echo "run.sh: results in $out"
