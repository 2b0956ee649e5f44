"""PyTorch brute-force reference for bench/retrieval.ts: the same distance / top-k work
on random vectors of the same shapes, CPU, 2 threads. Prints one JSON line.

    /usr/bin/python3 bench/retrieval_torch.py knn --pool 100000 --dim 384 --queries 1000 --k 50
    /usr/bin/python3 bench/retrieval_torch.py select --pool 100000 --dim 384 --seeds 1031 --classes 160 --k 46
    /usr/bin/python3 bench/retrieval_torch.py filter --test 10000 --pool 2000 --dim 2048
    /usr/bin/python3 bench/retrieval_torch.py alg1 --pool-raw BASE --seed-raw BASE --classes 160 --k 46 --k-val 0 --picks-out FILE

knn: the k nearest pool rows of each query, exact: squared L2 over pool chunks of 4096
rows and a running torch.topk merge (the same chunked work as dcd's knn).
select: per class, squared L2 (|a|^2 - 2ab + |b|^2, clamp 0) between the class's seeds and
its pool images, and the k*|S_y| nearest per seed (torch.topk) -- the candidate lists
Algorithm 1 sweeps. filter: for every pool image, the nearest of the test union
(min over chunks of 4096 pool rows). Data generation is not timed.
alg1: Algorithm 1 whole on the raw float32 files bench/retrieval.ts writes (BASE.f32, BASE.i32;
read before the clock starts): the pool sorted by weak label once, then per class the seeds ×
pool squared distances (norms computed once for the whole pool), the (k_val + k_train)·|S_y| nearest per seed (torch.topk), and the greedy
sweeps (entries sorted by distance, seed, row; de-val first, then debug-train without its picks).
Writes the picks ("V|D seed row rank" per line) to --picks-out.
"""
import argparse
import json
import resource
import time

import numpy as np
import torch

torch.set_num_threads(2)
torch.manual_seed(0)


def sqdist(a, b):
    d = (a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)[None, :]
    return d.clamp_min_(0)


def greedy(d, i, j, n_seeds, k, taken):
    """Algorithm 1's sweep: entries by (d, i, j); skip taken columns and full seeds."""
    order = np.lexsort((j, i, d))
    count = [0] * n_seeds
    picks = []
    full = 0
    for t in order.tolist():
        if full == n_seeds:
            break
        s, c = int(i[t]), int(j[t])
        if count[s] >= k or c in taken:
            continue
        taken.add(c)
        count[s] += 1
        full += count[s] == k
        picks.append((s, c, count[s]))
    return picks


def alg1(a):
    dim = a.dim
    pool = torch.from_numpy(np.fromfile(a.pool_raw + ".f32", dtype=np.float32).reshape(-1, dim))
    plab = torch.from_numpy(np.fromfile(a.pool_raw + ".i32", dtype=np.int32).astype(np.int64))
    seeds = torch.from_numpy(np.fromfile(a.seed_raw + ".f32", dtype=np.float32).reshape(-1, dim))
    slab = torch.from_numpy(np.fromfile(a.seed_raw + ".i32", dtype=np.int32).astype(np.int64))
    # touch every page before the clock starts (as bench/retrieval.ts does: first-touch faults on this VM)
    assert float(pool.sum()) >= 0 and float(seeds.sum()) >= 0
    t0 = time.perf_counter()
    order = torch.argsort(plab, stable=True)
    bounds = torch.cumsum(torch.bincount(plab, minlength=a.classes), 0).tolist()
    # Norms without a pool-sized temporary, and each class's rows gathered on their own: on this
    # VM a fresh 1.5 GB tensor costs ~4 s of page faults (pool * pool, pool[order] did).
    pn = torch.linalg.vector_norm(pool, dim=1).pow_(2)
    sn = torch.linalg.vector_norm(seeds, dim=1).pow_(2)
    sorder = torch.argsort(slab, stable=True)
    sbounds = torch.cumsum(torch.bincount(slab, minlength=a.classes), 0).tolist()
    out = []
    for y in range(a.classes):
        s0, s1 = (sbounds[y - 1] if y else 0), sbounds[y]
        p0, p1 = (bounds[y - 1] if y else 0), bounds[y]
        if s1 == s0 or p1 == p0:
            continue
        sidx = sorder[s0:s1]
        rows = order[p0:p1]
        d = (sn[sidx, None] - 2 * seeds[sidx] @ pool.index_select(0, rows).T + pn[rows][None, :]).clamp_min_(0)
        L = min((a.k + a.k_val) * (s1 - s0), p1 - p0)
        v, c = torch.topk(d, L, dim=1, largest=False, sorted=False)
        rows = rows[c]
        ii = torch.arange(s1 - s0).unsqueeze(1).expand(-1, L)
        dv, iv, jv = v.reshape(-1).numpy(), ii.reshape(-1).numpy(), rows.reshape(-1).numpy()
        taken = set()
        ns = s1 - s0
        sid = sidx.tolist()
        if a.k_val > 0:
            out += [("V", sid[s], c, r) for s, c, r in greedy(dv, iv, jv, ns, a.k_val, taken)]
        out += [("D", sid[s], c, r) for s, c, r in greedy(dv, iv, jv, ns, a.k, taken)]
    secs = time.perf_counter() - t0
    with open(a.picks_out, "w") as f:
        f.write("".join(f"{w} {s} {c} {r}\n" for w, s, c, r in out))
    return secs, {"selected": len(out)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["knn", "select", "filter", "alg1"])
    p.add_argument("--pool", type=int, default=0)
    p.add_argument("--pool-raw")
    p.add_argument("--seed-raw")
    p.add_argument("--picks-out")
    p.add_argument("--k-val", type=int, default=0)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--seeds", type=int, default=1031)
    p.add_argument("--classes", type=int, default=160)
    p.add_argument("--k", type=int, default=46)
    p.add_argument("--test", type=int, default=10000)
    p.add_argument("--queries", type=int, default=1000)
    a = p.parse_args()
    if a.what == "alg1":
        secs, extra = alg1(a)
    elif a.what == "knn":
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
