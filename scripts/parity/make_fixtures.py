#!/usr/bin/python3
"""Parity fixtures for dcd's tfjs models, generated with PyTorch (Debian python3-torch).

Builds each architecture with random weights, randomises every BatchNorm / LayerNorm
statistic and affine (so a tensor dropped on load shows in the features), saves the
checkpoints in the official formats users have, and records features on fixed inputs:

  resnet_bottleneck_tiny  torchvision Bottleneck ResNet, [1,1,1,1], widths 4/8/16/32
                          -> zip (torch>=1.6) and legacy (torch<1.6) state dicts
  resnet_basic_tiny       torchvision BasicBlock ResNet, [1,1,1,1], widths 4/8/16/32 -> zip
  resnet_robust_tiny      the bottleneck net inside MadryLab's wrapper
                          {'model': {module.normalizer.*, module.model.*, module.attacker.*}, 'epoch'}
                          -> legacy, as the published imagenet_l2_3_0.pt
  vit_fixture             DINO ViT (patch 8, dim 32, depth 2, heads 2, 32 px grid)
                          -> plain state dict (zip) and DINO full checkpoint (teacher/student,
                          module./backbone. prefixes, DINOHead, args Namespace), features at
                          32x32 (default grid), 48x48 and 32x48 (interpolated pos-embed)

Every reference goes to <name>.ref.safetensors (inputs NCHW, features, logits).

Usage: /usr/bin/python3 scripts/parity/make_fixtures.py [OUT_DIR]
       DCD_PARITY_FULL=1 ... also writes full-size resnet50 / dino_vits16 / dino_vits8 (use a temp dir).
"""
import argparse
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("DCD_TORCH_THREADS", "1")))


def write_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer (the package is not in Debian)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dt = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}[t.dtype]
        b = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- ResNet (torchvision)


class SmallResNet(ResNet):
    """torchvision's ResNet with configurable stage widths (same modules, same keys)."""

    def __init__(self, block, layers, widths, num_classes):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = widths[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)


def resnet_features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def randomise_norms(model):
    """Random running stats and affines on every BN / LN, so none can be silently skipped."""
    g = torch.Generator().manual_seed(1234)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
            mod.num_batches_tracked.fill_(1234)
        elif isinstance(mod, nn.LayerNorm):
            c = mod.normalized_shape[0]
            mod.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(c, generator=g) * 0.2)


class InputNormalize(nn.Module):
    """MadryLab robustness.helpers.InputNormalize."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("new_mean", mean[..., None, None])
        self.register_buffer("new_std", std[..., None, None])

    def forward(self, x):
        return (torch.clamp(x, 0, 1) - self.new_mean) / self.new_std


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])

# ---------------------------------------------------------------- ViT (DINO)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Following facebookresearch/dino vision_transformer.py (eval path)."""

    def __init__(self, img_size, patch, dim, depth, heads, mlp_ratio=4.0):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.patch_size = patch
        n = (img_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Identity()

    def interpolate_pos_encoding(self, x, w, h):
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos_embed = self.pos_embed[:, 0]
        patch_pos_embed = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch_size
        h0 = h // self.patch_size
        w0, h0 = w0 + 0.1, h0 + 0.1
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode="bicubic",
        )
        assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def forward(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


class DINOHead(nn.Module):
    """Enough of DINO's projection head for its keys to appear in full checkpoints."""

    def __init__(self, dim, out_dim=16, hidden=24, bottleneck=8):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, bottleneck))
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))


class MultiCropWrapper(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head


# ---------------------------------------------------------------- generation


def save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    print(f"  {path} ({os.path.getsize(path)} bytes)")


@torch.no_grad()
def make_resnet(out, name, block, layers, widths, size, classes, formats):
    torch.manual_seed(sum(map(ord, name)))  # deterministic (hash() is salted)
    m = SmallResNet(block, layers, widths, classes) if widths != [64, 128, 256, 512] else ResNet(block, layers, num_classes=classes)
    randomise_norms(m)
    m.eval()
    x = torch.randn(2, 3, size, size)
    feats = resnet_features(m, x)
    logits = m.fc(feats)
    sd = m.state_dict()
    if "zip" in formats:
        save(sd, os.path.join(out, f"{name}.pth"))
    if "legacy" in formats:
        save(sd, os.path.join(out, f"{name}_legacy.pth"), legacy=True)
    write_safetensors(os.path.join(out, f"{name}.ref.safetensors"), {"input": x, "features": feats, "logits": logits}, {"layout": "NCHW"})


@torch.no_grad()
def make_robust(out, name, layers, widths, size, classes):
    torch.manual_seed(7)
    net = SmallResNet(Bottleneck, layers, widths, classes) if widths != [64, 128, 256, 512] else ResNet(Bottleneck, layers, num_classes=classes)
    randomise_norms(net)
    net.eval()
    normalizer = InputNormalize(IMAGENET_MEAN, IMAGENET_STD)
    x = torch.rand(2, 3, size, size)  # robust models take [0,1] pixels
    feats = resnet_features(net, normalizer(x))
    logits = net.fc(feats)
    model = OrderedDict()
    for k, v in normalizer.state_dict().items():
        model[f"module.normalizer.{k}"] = v
    for k, v in net.state_dict().items():
        model[f"module.model.{k}"] = v
    for k, v in normalizer.state_dict().items():
        model[f"module.attacker.normalize.{k}"] = v
    for k, v in net.state_dict().items():
        model[f"module.attacker.model.{k}"] = v
    save({"model": model, "epoch": 90, "schedule": None}, os.path.join(out, f"{name}_madry_legacy.pt"), legacy=True)
    write_safetensors(os.path.join(out, f"{name}.ref.safetensors"), {"input": x, "features": feats, "logits": logits}, {"layout": "NCHW"})


@torch.no_grad()
def make_vit(out, name, img, patch, dim, depth, heads, sizes, full_ckpt=True):
    torch.manual_seed(11)
    teacher = VisionTransformer(img, patch, dim, depth, heads)
    for p in teacher.parameters():  # DINO-like scales, fully random
        p.data.normal_(0, 0.05)
    randomise_norms(teacher)
    teacher.eval()
    refs = {}
    for (h, w) in sizes:
        x = torch.randn(2, 3, h, w)
        refs[f"input_{h}x{w}"] = x
        refs[f"features_{h}x{w}"] = teacher(x)
    save(teacher.state_dict(), os.path.join(out, f"{name}.pth"))
    if full_ckpt:
        student = VisionTransformer(img, patch, dim, depth, heads)
        randomise_norms(student)
        t_wrap = MultiCropWrapper(teacher, DINOHead(dim))
        s_wrap = MultiCropWrapper(student, DINOHead(dim))
        student_sd = OrderedDict((f"module.{k}", v) for k, v in s_wrap.state_dict().items())  # DDP prefix
        args = argparse.Namespace(arch="vit_tiny", patch_size=patch, out_dim=16, lr=0.0005)
        save(
            {"student": student_sd, "teacher": t_wrap.state_dict(), "epoch": 100, "args": args, "dino_loss": {"center": torch.zeros(1, 16)}},
            os.path.join(out, f"{name}_full.pth"),
        )
    write_safetensors(os.path.join(out, f"{name}.ref.safetensors"), refs, {"layout": "NCHW"})


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "parity")
    os.makedirs(out, exist_ok=True)
    print(f"torch {torch.__version__}; writing to {out}")
    make_resnet(out, "resnet_bottleneck_tiny", Bottleneck, [1, 1, 1, 1], [4, 8, 16, 32], 32, 10, ["zip", "legacy"])
    make_resnet(out, "resnet_basic_tiny", BasicBlock, [1, 1, 1, 1], [4, 8, 16, 32], 32, 10, ["zip"])
    make_robust(out, "resnet_robust_tiny", [1, 1, 1, 1], [4, 8, 16, 32], 32, 10)
    make_vit(out, "vit_fixture", 32, 8, 32, 2, 2, [(32, 32), (48, 48), (32, 48)])
    # Key lists of the full-size official architectures (names and shapes only).
    from torchvision.models import resnet50
    shapes = lambda sd: {k: list(v.shape) for k, v in sd.items()}  # noqa: E731
    with open(os.path.join(out, "official_keys.json"), "w") as f:
        json.dump(
            {
                "resnet50": shapes(resnet50().state_dict()),
                "dino_vits16": shapes(VisionTransformer(224, 16, 384, 12, 6).state_dict()),
                "dino_vits8": shapes(VisionTransformer(224, 8, 384, 12, 6).state_dict()),
            },
            f,
            indent=0,
        )
    if os.environ.get("DCD_PARITY_FULL") == "1":
        make_resnet(out, "full_resnet50", Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], 224, 1000, ["zip"])
        make_robust(out, "full_resnet50_robust", [3, 4, 6, 3], [64, 128, 256, 512], 224, 1000)
        make_vit(out, "full_dino_vits16", 224, 16, 384, 12, 6, [(224, 224), (288, 288)], full_ckpt=False)
        make_vit(out, "full_dino_vits8", 224, 8, 384, 12, 6, [(224, 224)], full_ckpt=False)


if __name__ == "__main__":
    main()
