"""torchvision/PIL counterpart of bench/data.ts: decode + transform img/s at 224 px.

    /usr/bin/python3 bench/data_torch.py [DIR] [N] [REPS]

DIR holds the JPEGs bench/data.ts generated (default /tmp/dcd-bench-jpegs). Workers:
DataLoader num_workers=0 (the main process decodes, 1 core) and num_workers=2.
Output: one JSON line per configuration, best of REPS (3) repetitions; for 1 worker also
the CPU ms per image (process_time of the main process, which does all the work then).
"""
import json
import os
import sys
import time

import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dcd-bench-jpegs"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
NORM = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
TF = {
    "eval": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), NORM]),
    "train": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), NORM]),
}


class Files(Dataset):
    def __init__(self, files, tf):
        self.files, self.tf = files, tf

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with open(self.files[i], "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.tf(img)


def main():
    torch.set_num_threads(1)
    files = sorted(os.path.join(DIR, f) for f in os.listdir(DIR) if f.endswith(".jpg"))[:N]
    print(json.dumps({"bench": "data", "impl": "torchvision-pil", "n": len(files), "torch": torch.__version__,
                      "torchvision": torchvision.__version__, "pil": Image.__version__}))
    for name, tf in TF.items():
        for workers in (1, 2):
            best, cpu = 0.0, float("inf")
            for _ in range(REPS):
                dl = DataLoader(Files(files, tf), batch_size=32, num_workers=0 if workers == 1 else workers)
                t0, c0 = time.perf_counter(), time.process_time()
                n = sum(b.shape[0] for b in dl)
                best = max(best, n / (time.perf_counter() - t0))
                cpu = min(cpu, (time.process_time() - c0) * 1000 / n)
            out = {"bench": "data", "impl": "torchvision-pil", "transform": name, "workers": workers, "img_per_s": round(best, 1)}
            if workers == 1:  # process_time does not see DataLoader worker processes
                out["cpu_ms_per_img"] = round(cpu, 2)
            print(json.dumps(out))


if __name__ == "__main__":
    main()
