#!/usr/bin/python3
"""PyTorch counterpart of bench/models.ts: img/s of a backbone's forward_features at a
batch size, with 2 threads (Debian's torch links OpenBLAS). Prints one JSON line."""
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "parity"))
from make_fixtures import VisionTransformer, resnet_features  # noqa: E402
from torchvision.models import resnet50  # noqa: E402


def main():
    name, batch, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(int(os.environ.get("DCD_TORCH_THREADS", "2")))
    if name.startswith("resnet50"):
        m = resnet50()
        f = lambda x: resnet_features(m, x)  # noqa: E731
    elif name == "dino_vits16":
        m = VisionTransformer(224, 16, 384, 12, 6)
        f = m
    elif name == "dino_vits8":
        m = VisionTransformer(224, 8, 384, 12, 6)
        f = m
    else:
        raise SystemExit(f"unknown backbone {name}")
    m.eval()
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        f(x)  # warm-up
        t = time.perf_counter()
        for _ in range(iters):
            f(x)
        dt = time.perf_counter() - t
    print(json.dumps({"img_per_s": batch * iters / dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
