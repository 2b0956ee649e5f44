#!/usr/bin/env python3
"""Paper-scale reference timings with PyTorch on one GPU (and the host CPU's bf16 units).

dcd runs on tfjs; no tfjs GPU backend can be installed offline, so this script measures what
PyTorch does with the same workloads on a GPU machine, to ground the README's runtime estimate
for the paper's configs (embedding ~2.3M images per backbone, the 70k x 1M x 2048 leakage filter,
ResNet-50 training). Prints one JSON object per line; every figure is a measurement of this run.

    python3 bench/gpu_reference.py [--quick]
"""
import json
import os
import subprocess
import sys
import time

import torch
import torchvision

QUICK = "--quick" in sys.argv


def emit(**kw):
    print(json.dumps(kw), flush=True)


def timed(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def host_info():
    flags = open("/proc/cpuinfo").read()
    model = [l for l in flags.splitlines() if l.startswith("model name")][:1]
    emit(what="host", cpu=model[0].split(":", 1)[1].strip() if model else "?", cores=os.cpu_count(),
         amx_bf16="amx_bf16" in flags, avx512_bf16="avx512_bf16" in flags,
         gpu=torch.cuda.get_device_name(0), torch=torch.__version__, torchvision=torchvision.__version__)


def forward(name, model, batch, dtype, size=224):
    model = model.cuda().eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device="cuda").to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        dt = timed(lambda: model(x), 5 if QUICK else 20)
    emit(what="forward", model=name, batch=batch, precision=dtype, img_per_s=round(batch / dt, 1))


def train(batch, dtype):
    model = torchvision.models.resnet50().cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    dt = timed(step, 5 if QUICK else 20)
    emit(what="train_step", model="resnet50", batch=batch, precision=dtype, img_per_s=round(batch / dt, 1))


def leakage_filter(n_test, n_pool, dim, dtype):
    """min over the test set of squared L2, for every pool row (the leakage filter's work)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    dt_ = torch.bfloat16 if dtype == "bf16" else torch.float32
    test = torch.randn(n_test, dim, device="cuda", generator=g).to(dt_)
    tn = (test.float() ** 2).sum(1)
    chunk = 65536
    torch.cuda.synchronize()
    t = time.perf_counter()
    mins = []
    for s in range(0, n_pool, chunk):
        p = torch.randn(min(chunk, n_pool - s), dim, device="cuda", generator=g)
        pn = (p ** 2).sum(1)
        d = pn[:, None] - 2 * (p.to(dt_) @ test.T).float() + tn[None, :]
        mins.append(d.min(1).values)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    emit(what="leakage_filter", test=n_test, pool=n_pool, dim=dim, precision=dtype, seconds=round(dt, 2),
         note="includes generating the pool rows on the GPU")


def cpu_gemm(threads, dtype, n=2048):
    torch.set_num_threads(threads)
    dt_ = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(n, n).to(dt_)
    b = torch.randn(n, n).to(dt_)
    for _ in range(2):
        a @ b
    it = 5
    t = time.perf_counter()
    for _ in range(it):
        a @ b
    dt = (time.perf_counter() - t) / it
    emit(what="cpu_gemm", n=n, threads=threads, precision=dtype, gflops=round(2 * n ** 3 / dt / 1e9, 1))


def main():
    host_info()
    import timm
    for prec in ("fp32", "bf16"):
        forward("resnet50", torchvision.models.resnet50(), 256, prec)
        forward("vit_small_patch16_224", timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0), 256, prec)
        forward("vit_small_patch8_224", timm.create_model("vit_small_patch8_224", pretrained=False, num_classes=0), 64, prec)
    for prec in ("fp32", "bf16"):
        train(256, prec)
    for prec in ("fp32", "bf16"):
        leakage_filter(70000, 100000 if QUICK else 1000000, 2048, prec)
    for threads in (2, os.cpu_count()):
        for prec in ("fp32", "bf16"):
            cpu_gemm(threads, prec)


if __name__ == "__main__":
    main()
