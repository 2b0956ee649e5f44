#!/usr/bin/python3
"""Reference for test/train.test.ts: two SGD steps of a small torchvision-style ResNet.

Run with /usr/bin/python3 (torch 1.13): writes test/fixtures/train/step.safetensors.

The model matches src/models/resnet.ts (torchvision topology and key names: 7x7/2 stem,
3x3/2 max-pool, BasicBlock stages [1,1,1,1], here with widths 8/16/32/64 to keep the
fixture small). The trainer's settings under test: per-sample loss weights normalised by
the batch weight sum, label smoothing 0.1, SGD momentum 0.9 with Nesterov, weight decay
1e-4 on conv/linear weights only (not BN, not biases), BN in train mode (batch stats,
running stats updated with momentum 0.1, unbiased running var).

Stored tensors (float32, PyTorch layouts):
  init.<key>      initial params and buffers
  x               [2*B, H, W, 3] NHWC inputs, in the order the trainer visits them
  y               [2*B] labels (int32), w [2*B] sample weights
  loss            [2] weighted loss of step 1 and 2
  grad.<param>    gradients of step 1
  final.<key>     params and buffers after step 2
"""
import json
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(1)

WIDTHS = [8, 16, 32, 64]
NUM_CLASSES = 5
B, H = 4, 32
LR, MOM, WD, SMOOTH = 0.1, 0.9, 1e-4, 0.1


class BasicBlock(nn.Module):
    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inp != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(y + sc)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        w0 = WIDTHS[0]
        self.conv1 = nn.Conv2d(3, w0, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        inp = w0
        for i, planes in enumerate(WIDTHS):
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inp, planes, 1 if i == 0 else 2)))
            inp = planes
        self.fc = nn.Linear(inp, NUM_CLASSES)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def state(model):
    """params and float buffers (no num_batches_tracked: dcd's models do not keep it)."""
    return OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"generator": "scripts/train-ref/make_fixture.py", "torch": torch.__version__}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main(out):
    model = TinyResNet()
    # non-trivial BN affine so their gradients are exercised
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.train()
    init = state(model)
    x = torch.randn(2 * B, H, H, 3)
    y = torch.tensor([0, 3, 1, 4, 2, 2, 0, 1], dtype=torch.int64)
    w = torch.tensor([1.0, 2.0, 0.5, 0.0, 1.0, 1.0, 3.0, 0.25])
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}], lr=LR, momentum=MOM, nesterov=True)
    losses, grads = [], {}
    for s in range(2):
        xb = x[s * B:(s + 1) * B].permute(0, 3, 1, 2)
        yb, wb = y[s * B:(s + 1) * B], w[s * B:(s + 1) * B]
        opt.zero_grad()
        per = F.cross_entropy(model(xb), yb, reduction="none", label_smoothing=SMOOTH)
        loss = (per * wb).sum() / wb.sum()
        loss.backward()
        losses.append(loss.item())
        if s == 0:
            grads = {f"grad.{n}": p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
    tensors = {}
    tensors.update({f"init.{k}": v.numpy().astype(np.float32) for k, v in init.items()})
    tensors.update({f"final.{k}": v.numpy().astype(np.float32) for k, v in state(model).items()})
    tensors.update({k: v.numpy().astype(np.float32) for k, v in grads.items()})
    tensors["x"] = x.numpy().astype(np.float32)
    tensors["y"] = y.numpy().astype(np.int32)
    tensors["w"] = w.numpy().astype(np.float32)
    tensors["loss"] = np.array(losses, dtype=np.float32)
    write_safetensors(out, tensors)
    print(f"wrote {out}: losses {losses}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/train/step.safetensors")
