"""PyTorch counterpart of `dcd bench similarity` (bench/similarity.ts runs it and reports
tfjs/PyTorch ratios). Measures, on CPU with 2 threads:

- LPIPS (AlexNet): time to compute the five unit-normalised, lin-scaled taps of an image
  (484,992 values at 224 px), and time to rank a pool for one query: squared L2 between
  the stored stacks (equal to the LPIPS distance) plus top-k;
- each backbone: time to embed an image (penultimate features), and the same ranking on
  the embeddings; and ranking `--query-batch` queries at once (matrix product).

Weights are random (the measurement is of cost). Pool rows are copies of embedded images.

    /usr/bin/python3 bench/similarity_torch.py --pool-sizes 32,128,512 --backbones resnet50,dino_vits16 > out.json
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torchvision

torch.set_num_threads(2)
torch.manual_seed(0)


def timeit(repeats, f):
    """Fastest of >= `repeats` runs after a warm-up; short operations repeat for 0.3 s (as the tfjs side)."""
    f()
    ts = []
    start = time.perf_counter()
    while len(ts) < repeats or (len(ts) < 50 and time.perf_counter() - start < 0.3):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts)


class LpipsAlex(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torchvision.models.alexnet().features
        self.register_buffer('shift', torch.tensor([-.030, -.088, -.188])[None, :, None, None])
        self.register_buffer('scale', torch.tensor([.458, .448, .450])[None, :, None, None])

    def forward(self, x):
        h = (x - self.shift) / self.scale
        out = []
        for m in self.features:
            h = m(h)
            if isinstance(m, nn.ReLU):
                n = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                out.append((n / (n.shape[2] * n.shape[3]) ** 0.5).flatten(1))
                if len(out) == 5:
                    break
        return torch.cat(out, 1)


class Penultimate(nn.Module):
    def __init__(self, name):
        super().__init__()
        if name in ('resnet50', 'resnet50_robust'):
            m = torchvision.models.resnet50()
            m.fc = nn.Identity()
        elif name in ('dino_vits16', 'dino_vits8'):
            p = 16 if name == 'dino_vits16' else 8
            m = torchvision.models.VisionTransformer(image_size=224, patch_size=p, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536)
            m.heads = nn.Identity()
        else:
            raise SystemExit(f'similarity_torch.py: no PyTorch counterpart for backbone {name}')
        self.m = m.eval()

    def forward(self, x):
        return self.m(x)


def rank(query, pool, k):
    d = (pool - query).pow(2).sum(1)
    return torch.topk(d, min(k, d.numel()), largest=False)


def measure(name, net, x, pools, repeats, k, chunk, qb):
    with torch.no_grad():
        emb = net(x)
        embed = timeit(repeats, lambda: net(x)) / x.shape[0]
        dims = emb.shape[1]
        q = emb[:1]
        rows = []
        for n in pools:
            pool = emb.repeat((n + emb.shape[0] - 1) // emb.shape[0], 1)[:n].contiguous()

            def run():
                # Chunked like the tfjs side, so memory stays bounded for LPIPS.
                ds = [(pool[s:s + chunk] - q).pow(2).sum(1) for s in range(0, n, chunk)]
                torch.topk(torch.cat(ds), min(k, n), largest=False)

            rows.append({'pool': n, 'seconds': timeit(repeats, run)})
        batch_rows = []
        if qb > 0:
            qs = emb.repeat((qb + emb.shape[0] - 1) // emb.shape[0], 1)[:qb].contiguous()
            qn = qs.pow(2).sum(1, keepdim=True)
            # ~64 MB of pool rows per block, as the tfjs side.
            bchunk = max(1, min(4096, (64 << 20) // (dims * 4)))
            for n in pools:
                pool = emb.repeat((n + emb.shape[0] - 1) // emb.shape[0], 1)[:n].contiguous()

                def run_batch():
                    ds = [(qn - 2 * qs @ pool[s:s + bchunk].T + pool[s:s + bchunk].pow(2).sum(1)[None]).clamp_min(0) for s in range(0, n, bchunk)]
                    torch.topk(torch.cat(ds, 1), min(k, n), dim=1, largest=False)

                batch_rows.append({'pool': n, 'seconds': timeit(repeats, run_batch)})
    return {'method': name, 'dims': int(dims), 'embedSecondsPerImage': embed, 'rank': rows, 'rankBatch': batch_rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pool-sizes', default='32,128,512')
    ap.add_argument('--embed-pool-sizes', default='1024,4096,16384')
    ap.add_argument('--backbones', default='resnet50,dino_vits16')
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--k', type=int, default=50)
    ap.add_argument('--query-batch', type=int, default=32)
    a = ap.parse_args()
    pools = sorted(int(s) for s in a.pool_sizes.split(','))
    embed_pools = sorted(int(s) for s in a.embed_pool_sizes.split(','))
    out = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'methods': []}
    x = torch.rand(a.batch, 3, 224, 224) * 2 - 1
    out['methods'].append(measure('lpips_alexnet', LpipsAlex().eval(), x, pools, a.repeats, a.k, 32, a.query_batch))
    for b in [s for s in a.backbones.split(',') if s]:
        out['methods'].append(measure(b, Penultimate(b), torch.randn(a.batch, 3, 224, 224), embed_pools, a.repeats, a.k, 4096, a.query_batch))
    print(json.dumps(out))


if __name__ == '__main__':
    main()
