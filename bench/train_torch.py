#!/usr/bin/python3
"""PyTorch counterpart of bench/train.ts: training img/s (SGD Nesterov step, BN train mode).

Usage: /usr/bin/python3 bench/train_torch.py MODEL SIZE BATCH STEPS [THREADS]
MODEL: resnet50 | resnet_tiny | small_cnn. Prints one JSON line {"model", "size", "batch", "img_per_s"}.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


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
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(nn.Module):
    """src/models resnet_tiny: BasicBlock [1,1,1,1], widths 16/32/64/128, 7x7/2 stem + max-pool."""

    def __init__(self, classes=10, widths=(16, 32, 64, 128)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, inp = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(BasicBlock(inp, w, 1 if i == 0 else 2))
            inp = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(inp, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(x), 1), 1))


class SmallCnn(nn.Module):
    """src/models/small-cnn.ts: 3x3 "same" conv + ReLU per width, 2x2 max-pool between, global mean, linear head."""

    def __init__(self, classes=6, widths=(16, 32, 64)):
        super().__init__()
        self.convs = nn.ModuleList()
        inp = 3
        for w in widths:
            self.convs.append(nn.Conv2d(inp, w, 3, 1, 1))
            inp = w
        self.fc = nn.Linear(inp, classes)

    def forward(self, x):
        for i, c in enumerate(self.convs):
            x = F.relu(c(x))
            if i < len(self.convs) - 1:
                x = F.max_pool2d(x, 2)
        return self.fc(x.mean((2, 3)))


def main():
    name, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
    torch.manual_seed(0)
    classes = 1000 if name == "resnet50" else 6 if name == "small_cnn" else 10
    model = torchvision.models.resnet50() if name == "resnet50" else SmallCnn(classes) if name == "small_cnn" else TinyResNet(classes)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"model": name, "size": size, "batch": batch, "img_per_s": batch * steps / dt}))


if __name__ == "__main__":
    main()
