#!/usr/bin/python3
"""Where do the train fixture's bf16 first-step gradients lose their accuracy? (issue 17)

Runs the first step of test/fixtures/train/step.safetensors in PyTorch 1.13 (CPU) with the
convolutions and the linear layer replaced by functions that round chosen tensors to bf16 (round
to nearest even) and compute in fp32. `dcd` is the emulation of dcd's bf16 mode
(native/src/addon.cc): inputs and weights rounded forward, dy and weights for backprop-input, x and
dy for backprop-filter where dcd runs it in bf16 (without AMX: stride 1 and ≥ 28×28 outputs, see
BwdFilterBf16; none of this fixture's 32 px convolutions, so their filter gradients are fp32), every
output fp32, everything else (BatchNorm, ReLU, max-pool, loss) fp32.
Prints each mode's min / median gradient cosine to the fixture's fp32 gradients (over the 38
parameters), then, with --rescale N, the spread of those two numbers over N redraws of the
roundings: each convolution's weights multiplied by 2^u, u uniform in [0, 1). Every convolution
feeds a train-mode BatchNorm, which undoes the scale in fp32 (the fp32 gradients' cosines stay
1.000), while the bf16 roundings of the weights and of everything downstream change: a fair
comparison of rounding schemes where a single draw is not.

  /usr/bin/python3 scripts/train-ref/bisect_bf16.py [--rescale N] [--layers] [--flips]
  /usr/bin/python3 scripts/train-ref/bisect_bf16.py --write test/fixtures/train/step-bf16.safetensors
      writes the `dcd` mode's first-step gradients (grad.<param>) for test/bf16.test.ts
"""
import argparse, os, statistics, sys
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixture as mf
from autocast_bf16 import fx

torch.set_num_threads(1)


def bf(t):
    return t.bfloat16().float()


def ident(t):
    return t


class Rounding:
    """Which tensors a convolution / linear layer rounds to bf16: fwd (its input and weights),
    out (its output, as autocast does), bwd (dy and the other operand of both backward passes),
    gout (the gradients it returns, as autocast's bf16 backward does)."""

    def __init__(self, fwd=True, out=False, bwd=True, gout=False, only=None):
        self.fwd, self.out, self.bwd, self.gout, self.only = fwd, out, bwd, gout, only


def filter_bf16(stride, dy):
    """Whether dcd computes this convolution's backprop-filter in bf16 (addon.cc BwdFilterBf16, no AMX)."""
    return tuple(stride) == (1, 1) and dy.shape[2] * dy.shape[3] >= 28 * 28


def conv_fn(r):
    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, stride, padding):
            ctx.save_for_backward(x, w)
            ctx.conf = (stride, padding)
            f = bf if r.fwd else ident
            y = F.conv2d(f(x), f(w), None, stride, padding)
            return bf(y) if r.out else y

        @staticmethod
        def backward(ctx, dy):
            x, w = ctx.saved_tensors
            stride, padding = ctx.conf
            f = bf if r.bwd else ident
            dx = torch.nn.grad.conv2d_input(x.shape, f(w), f(dy), stride, padding)
            fw = f if filter_bf16(stride, dy) else ident
            dw = torch.nn.grad.conv2d_weight(fw(x), w.shape, fw(dy), stride, padding)
            g = bf if r.gout else ident
            return g(dx), g(dw), None, None
    return Conv.apply


def linear_fn(r):
    class Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            f = bf if r.fwd else ident
            y = f(x) @ f(w).t() + b
            return bf(y) if r.out else y

        @staticmethod
        def backward(ctx, dy):
            x, w = ctx.saved_tensors
            f = bf if r.bwd else ident
            g = bf if r.gout else ident
            return g(f(dy) @ f(w)), g(f(dy).t() @ f(x)), dy.sum(0)
    return Linear.apply


def patch(model, r):
    conv, lin = conv_fn(r), linear_fn(r)
    for name, m in model.named_modules():
        if r.only is not None and name not in r.only:
            continue
        if isinstance(m, nn.Conv2d):
            m.forward = (lambda m: lambda x: conv(x, m.weight, m.stride, m.padding))(m)
        elif isinstance(m, nn.Linear):
            m.forward = (lambda m: lambda x: lin(x, m.weight, m.bias))(m)


def first_step(rounding=None, autocast=False, rescale_seed=None):
    """First-step gradients {param: tensor} of the fixture's model and batch."""
    model = mf.TinyResNet()
    model.load_state_dict({k[5:]: torch.tensor(v) for k, v in fx.items() if k.startswith('init.')}, strict=False)
    model.train()
    if rescale_seed is not None:
        g = torch.Generator().manual_seed(rescale_seed)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(2 ** torch.rand((), generator=g).item())
    if rounding:
        patch(model, rounding)
    B = mf.B
    xb = torch.tensor(fx['x'][:B]).permute(0, 3, 1, 2)
    yb, wb = torch.tensor(fx['y'][:B]).long(), torch.tensor(fx['w'][:B])
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        logits = model(xb)
    per = F.cross_entropy(logits.float(), yb, reduction='none', label_smoothing=mf.SMOOTH)
    ((per * wb).sum() / wb.sum()).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def cosines(grads):
    out = {}
    for n, g in grads.items():
        a, r = g.flatten().double(), torch.tensor(fx['grad.' + n]).flatten().double()
        out[n] = (a @ r / (a.norm() * r.norm())).item()
    return out


def summary(cs):
    v = sorted(cs.values())
    return v[0], v[len(v) // 2]


def flips():
    """Per ReLU / max-pool input of the forward pass: the dcd mode's relative error against fp32, and how
    many ReLU inputs change sign / max-pool windows change their argmax."""
    seen = []
    relu, pool = F.relu, F.max_pool2d

    def rec(kind, f):
        def g(x, *a, **k):
            seen.append((kind, x.detach().clone()))
            return f(x, *a, **k)
        return g
    mf.F.relu, mf.F.max_pool2d = rec('relu', relu), rec('max-pool', pool)
    try:
        runs = []
        for r in (None, Rounding()):
            seen.clear()
            model = mf.TinyResNet()
            model.load_state_dict({k[5:]: torch.tensor(v) for k, v in fx.items() if k.startswith('init.')}, strict=False)
            model.train()
            if r:
                patch(model, r)
            model(torch.tensor(fx['x'][:mf.B]).permute(0, 3, 1, 2))
            runs.append(list(seen))
    finally:
        mf.F.relu, mf.F.max_pool2d = relu, pool
    for (kind, a), (_, b) in zip(*runs):
        err = float((a - b).norm() / a.norm())
        if kind == 'relu':
            n = int(((a > 0) != (b > 0)).sum())
        else:
            n = int((pool(a, 3, 2, 1, return_indices=True)[1] != pool(b, 3, 2, 1, return_indices=True)[1]).sum())
        print(f'{kind:8s} input {str(tuple(a.shape)):16s} relative error {err:.4f}  '
              f'{"sign flips" if kind == "relu" else "argmax changes"} {n} of {a.numel() if kind == "relu" else a.numel() // 4}')


MODES = {
    'fp32': dict(),
    'torch.autocast bf16': dict(autocast=True),
    'dcd (in/w rounded, fp32 out)': dict(rounding=Rounding()),
    'dcd, forward rounding only': dict(rounding=Rounding(bwd=False)),
    'dcd, backward rounding only': dict(rounding=Rounding(fwd=False)),
    'dcd + outputs rounded': dict(rounding=Rounding(out=True)),
    'dcd + outputs and grads rounded': dict(rounding=Rounding(out=True, gout=True)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rescale', type=int, default=0, help='redraws of the roundings to take statistics over')
    ap.add_argument('--layers', action='store_true', help='forward rounding at one convolution at a time')
    ap.add_argument('--flips', action='store_true', help="the dcd mode's forward error and ReLU / max-pool flips")
    ap.add_argument('--write', help="write the dcd mode's gradients to this safetensors file")
    a = ap.parse_args()
    if a.write:
        g = first_step(Rounding())
        mf.write_safetensors(a.write, {f'grad.{n}': v.numpy().astype(np.float32) for n, v in g.items()})
        print(f'wrote {a.write}: min/median cosine to fp32 %.4f / %.4f' % summary(cosines(g)))
        return
    print('mode                              min cos  median cos  (first-step gradients against PyTorch fp32)')
    for name, kw in MODES.items():
        cs = cosines(first_step(**kw))
        worst = ', '.join(f'{k} {cs[k]:.3f}' for k in sorted(cs, key=cs.get)[:2])
        print(f'{name:33s} {summary(cs)[0]:.4f}   {summary(cs)[1]:.4f}     worst: {worst}')
    if a.layers:
        convs = [n for n, m in mf.TinyResNet().named_modules() if isinstance(m, nn.Conv2d)]
        for c in convs:
            print(f'forward rounding at {c:22s} min / median %.4f / %.4f' % summary(cosines(first_step(Rounding(bwd=False, only={c})))))
    if a.flips:
        flips()
    if a.rescale:
        print(f'over {a.rescale} rescalings: min cosine [lowest, median, highest]; median cosine [lowest, median, highest]')
        for name, kw in MODES.items():
            s = [summary(cosines(first_step(**kw, rescale_seed=j))) for j in range(1, a.rescale + 1)]
            mins, meds = [m for m, _ in s], [m for _, m in s]
            print(f'{name:33s} min [{min(mins):.3f} {statistics.median(mins):.3f} {max(mins):.3f}]  '
                  f'median [{min(meds):.3f} {statistics.median(meds):.3f} {max(meds):.3f}]')


if __name__ == '__main__':
    main()
