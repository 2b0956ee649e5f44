"""PyTorch peer for bench/native-backends.ts: the same workloads, printed as one JSON line.

Run with the system Python that has torch (`/usr/bin/python3 bench/peers_torch.py --json`).
Each row: {"row": name, "seconds": per-iteration wall time (best of iters), "items": images
or queries per iteration}. Threads: --threads (default 2, the machine's cores).
"""
import argparse
import json
import sys
import time

import torch
import torchvision


DEVICE = "cpu"


def sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn, iters):
    fn()  # warm-up (allocator, kernel selection)
    sync()
    best = float("inf")
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()  # on a GPU, the work queued by fn is part of its time
        best = min(best, time.perf_counter() - t)
    return best


def vit_s16():
    return torchvision.models.VisionTransformer(
        image_size=224, patch_size=16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="resnet50-fwd,vit-fwd,resnet50-train,knn")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--knn-queries", type=int, default=1000)
    ap.add_argument("--knn-pool", type=int, default=100000)
    ap.add_argument("--knn-dim", type=int, default=384)
    ap.add_argument("--knn-k", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (scripts/gpu/run.sh: PyTorch on the same GPU as webgpu)")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = a.rows.split(",")
    out = []
    with torch.no_grad():
        if "resnet50-fwd" in rows:
            m = torchvision.models.resnet50().eval().to(dev)
            x = torch.randn(a.batch, 3, 224, 224, device=dev)
            out.append({"row": "resnet50-fwd", "seconds": best_time(lambda: m(x), a.iters), "items": a.batch})
        if "vit-fwd" in rows:
            m = vit_s16().eval().to(dev)
            x = torch.randn(a.batch, 3, 224, 224, device=dev)
            out.append({"row": "vit-fwd", "seconds": best_time(lambda: m(x), a.iters), "items": a.batch})
        if "knn" in rows:
            q = torch.randn(a.knn_queries, a.knn_dim, device=dev)
            p = torch.randn(a.knn_pool, a.knn_dim, device=dev)

            def knn():
                pn = (p * p).sum(1)
                best_d, best_i = None, None
                for s in range(0, a.knn_pool, 16384):
                    blk = p[s : s + 16384]
                    d = pn[s : s + 16384][None, :] - 2 * q @ blk.T
                    v, i = torch.topk(d, min(a.knn_k, blk.shape[0]), dim=1, largest=False)
                    i = i + s
                    if best_d is None:
                        best_d, best_i = v, i
                    else:
                        cd, ci = torch.cat([best_d, v], 1), torch.cat([best_i, i], 1)
                        best_d, o = torch.topk(cd, a.knn_k, dim=1, largest=False)
                        best_i = torch.gather(ci, 1, o)
                return best_i

            out.append({"row": "knn", "seconds": best_time(knn, max(1, a.iters - 1)), "items": a.knn_queries})
    if "resnet50-train" in rows:
        m = torchvision.models.resnet50().train().to(dev)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(a.train_batch, 3, 224, 224, device=dev)
        y = torch.randint(0, 1000, (a.train_batch,), device=dev)

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()

        out.append({"row": "resnet50-train", "seconds": best_time(step, max(1, a.iters - 1)), "items": a.train_batch})
    where = torch.cuda.get_device_name(dev) if DEVICE.startswith("cuda") else f"{torch.get_num_threads()} threads"
    info = {"peer": f"pytorch {torch.__version__} ({where})", "results": out}
    print(json.dumps(info) if a.json else info)


if __name__ == "__main__":
    sys.exit(main())
