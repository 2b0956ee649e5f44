#!/usr/bin/python3
"""Reference for test/ssl.test.ts: one DINO step of the projection head, in PyTorch.

Run with /usr/bin/python3 (torch 1.13): writes test/fixtures/ssl/dino-step.safetensors.

Follows facebookresearch/dino (main_dino.py, vision_transformer.py) line by line:
DINOHead (3-layer MLP with GELU, L2 normalisation, weight-normalised last layer without
bias, weight_g fixed at 1), DINOLoss (teacher softmax((t - c)/tau_t), student
log_softmax(s/tau_s), cross-entropy over (q, v != q) pairs, mean), update_center (EMA of the
batch mean), the teacher EMA, and torch.optim.AdamW with DINO's parameter groups (no weight
decay on biases and 1-d tensors). The backbone is left out: the features of every view are
given (they come from the small CNN, tested elsewhere).

Stored tensors (float32, PyTorch layouts):
  student.<key>, teacher.<key>  initial head parameters (mlp.0.weight [out, in], ...)
  feat_s [V*B, D]  student features of every view (views 0, 1 are the global ones)
  feat_t [G*B, D]  teacher features of the global views
  center [1, K]
  loss []          the DINO loss
  grad.<key>       d loss / d student parameter
  new_student.<key>, new_teacher.<key>, new_center
  bn.student.<key>, bn.loss, bn.grad.<key>  a head with BatchNorm1d (use_bn=True): loss against the
                   same teacher targets, and its gradients
Settings go in the metadata (temperatures, momenta, lr, weight decay).
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
D, H, BOT, K, B, G, V = 6, 8, 5, 7, 3, 2, 4
S_TEMP, T_TEMP, C_MOM, M, LR, WD = 0.1, 0.04, 0.9, 0.996, 0.01, 0.04


class DINOHead(nn.Module):
    def __init__(self, use_bn=False):
        super().__init__()
        if use_bn:  # vision_transformer.py DINOHead(use_bn=True): Linear, BatchNorm1d, GELU per hidden layer
            self.mlp = nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H), nn.GELU(), nn.Linear(H, H), nn.BatchNorm1d(H), nn.GELU(), nn.Linear(H, BOT))
        else:
            self.mlp = nn.Sequential(nn.Linear(D, H), nn.GELU(), nn.Linear(H, H), nn.GELU(), nn.Linear(H, BOT))
        self.last_layer = nn.utils.weight_norm(nn.Linear(BOT, K, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


student, teacher = DINOHead(), DINOHead()
for p in teacher.parameters():
    p.requires_grad = False
feat_s = torch.randn(V * B, D)
feat_t = torch.randn(G * B, D)
center = torch.randn(1, K) * 0.5

out = {}
for k, v in student.state_dict().items():
    out["student." + k] = v.clone()
for k, v in teacher.state_dict().items():
    out["teacher." + k] = v.clone()
out["feat_s"], out["feat_t"], out["center"] = feat_s, feat_t, center

# DINOLoss.forward
student_out = (student(feat_s) / S_TEMP).chunk(V)
t_out = teacher(feat_t)
teacher_out = F.softmax((t_out - center) / T_TEMP, dim=-1).detach().chunk(G)
total, n = 0, 0
for iq, q in enumerate(teacher_out):
    for v in range(len(student_out)):
        if v == iq:
            continue
        total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
        n += 1
loss = total / n
new_center = center * C_MOM + t_out.sum(0, keepdim=True) / len(t_out) * (1 - C_MOM)

# utils.get_params_groups: no decay on biases and 1-d tensors
reg = [p for name, p in student.named_parameters() if p.requires_grad and not (name.endswith(".bias") or len(p.shape) == 1)]
noreg = [p for name, p in student.named_parameters() if p.requires_grad and (name.endswith(".bias") or len(p.shape) == 1)]
opt = torch.optim.AdamW([{"params": reg, "weight_decay": WD}, {"params": noreg, "weight_decay": 0.0}], lr=LR)
opt.zero_grad()
loss.backward()
for k, p in student.named_parameters():
    if p.grad is not None:
        out["grad." + k] = p.grad.clone()
opt.step()
with torch.no_grad():  # the EMA teacher
    for ps, pt in zip(student.parameters(), teacher.parameters()):
        pt.data.mul_(M).add_((1 - M) * ps.detach().data)

out["loss"] = loss.detach().reshape(())

# the same loss through a head with BatchNorm (training mode, batch statistics): forward and gradients
bn = DINOHead(use_bn=True)
with torch.no_grad():
    for m in bn.mlp:
        if isinstance(m, nn.BatchNorm1d):  # non-trivial affine parameters
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
for k, v in bn.state_dict().items():
    if "running" not in k and "num_batches" not in k:
        out["bn.student." + k] = v.clone()
bn_out = (bn(feat_s) / S_TEMP).chunk(V)
total, n = 0, 0
for iq, q in enumerate(teacher_out):
    for v in range(len(bn_out)):
        if v == iq:
            continue
        total += torch.sum(-q * F.log_softmax(bn_out[v], dim=-1), dim=-1).mean()
        n += 1
bn_loss = total / n
bn_loss.backward()
out["bn.loss"] = bn_loss.detach().reshape(())
for k, p in bn.named_parameters():
    if p.grad is not None:
        out["bn.grad." + k] = p.grad.clone()
out["new_center"] = new_center
for k, v in student.state_dict().items():
    out["new_student." + k] = v.clone()
for k, v in teacher.state_dict().items():
    out["new_teacher." + k] = v.clone()

meta = {"views": str(V), "globals": str(G), "student_temp": str(S_TEMP), "teacher_temp": str(T_TEMP),
        "center_momentum": str(C_MOM), "momentum": str(M), "lr": str(LR), "weight_decay": str(WD),
        "head": json.dumps({"inDim": D, "hiddenDim": H, "bottleneckDim": BOT, "outDim": K, "layers": 3}),
        "torch": torch.__version__}


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        a = tensors[name].detach().cpu().numpy().astype("<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


path = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/ssl/dino-step.safetensors"
write_safetensors(path, out, meta)
print(f"wrote {path}: loss {loss.item():.6f}")
