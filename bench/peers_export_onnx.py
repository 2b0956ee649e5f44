"""Exports the PyTorch peer models to ONNX for the onnxruntime-node peer of
bench/native-backends.ts: `/usr/bin/python3 bench/peers_export_onnx.py bench/out/onnx`.
Random weights (speed does not depend on them); dynamic batch axis."""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from peers_torch import vit_s16  # noqa: E402


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    x = torch.randn(1, 3, 224, 224)
    for name, model in [("resnet50", torchvision.models.resnet50()), ("vit_s16", vit_s16())]:
        path = os.path.join(out_dir, f"{name}.onnx")
        if os.path.exists(path):
            continue
        tmp = path + ".tmp"
        torch.onnx.export(model.eval(), x, tmp, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=14)
        os.replace(tmp, path)
        print(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out/onnx")
