"""Writes the MAT-file / ILSVRC2012 devkit fixtures of test/matfile.test.ts with scipy.

    apt-get install -y python3-scipy && /usr/bin/python3 scripts/parity/make_matfile_fixtures.py

Into test/fixtures/data/devkit/:
- meta.mat, meta-compressed.mat: a fake devkit data/meta.mat with the real file's layout
  (8x1 struct array `synsets`, fields ILSVRC2012_ID, WNID, words, gloss, num_children,
  children, wordnet_height, num_train_images), five leaf classes with their real
  ILSVRC2012_IDs 1..5 and three ancestors (1001..1003); uncompressed and zlib-compressed.
  Like MATLAB's files, small integers are stored as uint8/uint16 arrays.
- misc.mat (compressed): the other array kinds the reader handles (cell, char matrix,
  single, int8/int16/int64, logical, complex, nested struct, empty arrays).
- ILSVRC2012_devkit_t12/data/{meta.mat, ILSVRC2012_validation_ground_truth.txt} and the
  same tree as ILSVRC2012_devkit_t12.tar.gz (GNU tar, as the real download; mtime 0).
- expected.json: what the test should read back, written from the same Python values.
"""
import gzip
import io
import json
import os
import tarfile

import numpy as np
import scipy
import scipy.io as sio

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "fixtures", "data", "devkit")

# (ILSVRC2012_ID, WNID, words, gloss, children, wordnet_height, num_train_images); IDs 1..5 as in the real devkit.
SYNSETS = [
    (1, "n02119789", "kit fox, Vulpes macrotis", "small grey fox of southwestern United States", [], 0, 1300),
    (2, "n02100735", "English setter", "an English breed having a plumed tail and a soft silky coat", [], 0, 1300),
    (3, "n02110185", "Siberian husky", "breed of sled dog developed in northeastern Siberia", [], 0, 1300),
    (4, "n02096294", "Australian terrier", "small greyish wire-haired breed of terrier from Australia", [], 0, 1300),
    (5, "n02102040", "English springer, English springer spaniel", "a breed of springer spaniel — not ASCII: café", [], 0, 1300),
    (1001, "n02084071", "dog, domestic dog, Canis familiaris", "a member of the genus Canis", [2, 3, 4, 5], 1, 5200),
    (1002, "n02118333", "fox", "alert carnivorous mammal with pointed muzzle and ears", [1], 1, 1300),
    (1003, "n00001740", "entity", "that which is perceived or known or inferred", [1001, 1002], 2, 6500),
]
GROUND_TRUTH = [3, 1, 5, 2, 4, 1]

FIELDS = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]


def small_int(v):
    # MATLAB saves integer-valued doubles in the narrowest storage type; scipy reads them back as such.
    return np.array([[v]], dtype=np.uint8 if v < 256 else np.uint16)


def synsets_struct():
    arr = np.zeros((len(SYNSETS), 1), dtype=[(f, object) for f in FIELDS])
    for i, (sid, wnid, words, gloss, children, height, ntrain) in enumerate(SYNSETS):
        arr[i, 0] = (
            small_int(sid),
            np.array([wnid]),
            np.array([words]),
            np.array([gloss]),
            small_int(len(children)),
            np.array([children], dtype=np.uint16) if children else np.zeros((1, 0), dtype=np.uint8),
            small_int(height),
            small_int(ntrain),
        )
    return arr


def misc_vars():
    cell = np.empty((1, 3), dtype=object)
    cell[0, 0] = "abc"
    cell[0, 1] = np.array([[1, 2], [3, 4]], dtype=np.int16)
    cell[0, 2] = np.zeros((0, 0))
    inner = np.zeros((1, 1), dtype=[("a", object), ("b", object)])
    inner[0, 0] = (np.array([[1.5, -2.0]]), "x")
    outer = np.zeros((1, 1), dtype=[("inner", object), ("n", object)])
    outer[0, 0] = (inner, np.array([[7]], dtype=np.int8))
    return {
        "cell": cell,
        "charmat": np.array(["abc", "def"]),
        "single": np.array([[0.5, 1.25, -3.0]], dtype=np.float32),
        "int64": np.array([[-(2**40), 2**40]], dtype=np.int64),
        "logical": np.array([[True, False, True]]),
        "complex": np.array([[1 + 2j, 3 - 4j]]),
        "matrix": np.arange(6, dtype=np.float64).reshape(2, 3),  # column-major on disk: 0 3 1 4 2 5
        "nested": outer,
        "empty": np.zeros((0, 3)),
    }


def tar_add(tf, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 0
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


def main():
    os.makedirs(OUT, exist_ok=True)
    synsets = {"synsets": synsets_struct()}
    sio.savemat(os.path.join(OUT, "meta.mat"), synsets, do_compression=False)
    sio.savemat(os.path.join(OUT, "meta-compressed.mat"), synsets, do_compression=True)
    sio.savemat(os.path.join(OUT, "misc.mat"), misc_vars(), do_compression=True)

    # scipy must read its own files back as the devkit's layout (the same check torchvision relies on).
    back = sio.loadmat(os.path.join(OUT, "meta-compressed.mat"), squeeze_me=True)["synsets"]
    assert [int(r["ILSVRC2012_ID"]) for r in back] == [s[0] for s in SYNSETS]
    assert list(back.dtype.names) == FIELDS

    with open(os.path.join(OUT, "meta-compressed.mat"), "rb") as f:
        meta = f.read()
    gt = "".join(f"{i}\n" for i in GROUND_TRUTH).encode()
    data_dir = os.path.join(OUT, "ILSVRC2012_devkit_t12", "data")
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "meta.mat"), "wb") as f:
        f.write(meta)
    with open(os.path.join(data_dir, "ILSVRC2012_validation_ground_truth.txt"), "wb") as f:
        f.write(gt)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in ["ILSVRC2012_devkit_t12/", "ILSVRC2012_devkit_t12/data/"]:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        tar_add(tf, "ILSVRC2012_devkit_t12/COPYING", b"fixture, not the real devkit\n")
        tar_add(tf, "ILSVRC2012_devkit_t12/data/meta.mat", meta)
        tar_add(tf, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", gt)
    with open(os.path.join(OUT, "ILSVRC2012_devkit_t12.tar.gz"), "wb") as f:
        f.write(gzip.compress(raw.getvalue(), mtime=0))

    expected = {
        "scipy": scipy.__version__,
        "synsets": [{"id": s[0], "wnid": s[1], "words": s[2], "gloss": s[3], "numChildren": len(s[4]), "children": s[4]} for s in SYNSETS],
        "groundTruth": GROUND_TRUTH,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
