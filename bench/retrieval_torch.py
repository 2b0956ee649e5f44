"""PyTorch brute-force reference for bench/retrieval.ts: the same distance / top-k work
on random vectors of the same shapes, CPU, 2 threads. Prints one JSON line.

    /usr/bin/python3 bench/retrieval_torch.py knn --pool 100000 --dim 384 --queries 1000 --k 50
    /usr/bin/python3 bench/retrieval_torch.py select --pool 100000 --dim 384 --seeds 1031 --classes 160 --k 46
    /usr/bin/python3 bench/retrieval_torch.py filter --test 10000 --pool 2000 --dim 2048

knn: the k nearest pool rows of each query, exact: squared L2 over pool chunks of 4096
rows and a running torch.topk merge (the same chunked work as dcd's knn).
select: per class, squared L2 (|a|^2 - 2ab + |b|^2, clamp 0) between the class's seeds and
its pool images, and the k*|S_y| nearest per seed (torch.topk) -- the candidate lists
Algorithm 1 sweeps. filter: for every pool image, the nearest of the test union
(min over chunks of 4096 pool rows). Data generation is not timed.
"""
import argparse
import json
import resource
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)


def sqdist(a, b):
    d = (a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)[None, :]
    return d.clamp_min_(0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["knn", "select", "filter"])
    p.add_argument("--pool", type=int, required=True)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--seeds", type=int, default=1031)
    p.add_argument("--classes", type=int, default=160)
    p.add_argument("--k", type=int, default=46)
    p.add_argument("--test", type=int, default=10000)
    p.add_argument("--queries", type=int, default=1000)
    a = p.parse_args()
    if a.what == "knn":
        pool = torch.rand(a.pool, a.dim)
        q = torch.rand(a.queries, a.dim)
        t0 = time.perf_counter()
        best_d = torch.full((a.queries, 0), float("inf"))
        best_i = torch.zeros((a.queries, 0), dtype=torch.long)
        for s in range(0, a.pool, 4096):
            d = sqdist(q, pool[s : s + 4096])
            cd = torch.cat([best_d, d], 1)
            ci = torch.cat([best_i, torch.arange(s, s + d.shape[1]).expand(a.queries, -1)], 1)
            v, j = torch.topk(cd, min(a.k, cd.shape[1]), dim=1, largest=False, sorted=True)
            best_d, best_i = v, torch.gather(ci, 1, j)
        secs = time.perf_counter() - t0
        extra = {"first": int(best_i[0, 0])}
    elif a.what == "select":
        pool = torch.rand(a.pool, a.dim)
        plab = torch.randint(0, a.classes, (a.pool,))
        seeds = torch.rand(a.seeds, a.dim)
        slab = torch.arange(a.seeds) % a.classes
        t0 = time.perf_counter()
        kept = 0
        for y in range(a.classes):
            s = seeds[slab == y]
            c = pool[plab == y]
            if len(s) == 0 or len(c) == 0:
                continue
            d = sqdist(s, c)
            L = min(a.k * len(s), c.shape[0])
            v, i = torch.topk(d, L, dim=1, largest=False)
            kept += v.numel()
        secs = time.perf_counter() - t0
        extra = {"entries": kept}
    else:
        test = torch.rand(a.test, a.dim)
        pool = torch.rand(a.pool, a.dim)
        t0 = time.perf_counter()
        mins = []
        for s in range(0, a.pool, 4096):
            d = sqdist(pool[s : s + 4096], test)
            mins.append(d.min(1))
        secs = time.perf_counter() - t0
        extra = {}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"what": a.what, "seconds": secs, "maxRssMiB": rss, **vars(a), **extra}))


if __name__ == "__main__":
    main()
