"""HW8 predictor, numpy only: python3 predict.py test.csv out.csv

Reads model.npz (fer_lib's export: a JSON __meta__ and the weights, BatchNorm folded)
and plan.json (the layers in order; each conv/fc takes the next tensors) beside this
file. Writes id,label: the arg-max of the mean logits of each face and its mirror.
Arrays are (N, H, W, C) float32; pixels are scaled as in training.
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def tensors(path):
    """The float32 tensors of a fer_lib export, in the order the plan takes them."""
    z = np.load(path)
    meta = json.loads(z["__meta__"].tobytes())
    blob = {k: z[k] for k in z.files if k != "__meta__"}
    if "p" in blob:  # int4: two per byte, low nibble first, two's complement
        b = blob["p"]
        blob["p"] = (np.stack([b & 15, b >> 4], 1).ravel().astype(np.int8) ^ 8) - 8
    at = dict.fromkeys(blob, 0)

    def take(k, n):
        at[k] += n
        return blob[k][at[k] - n:at[k]].astype(np.float32)

    out = []
    for shape, scheme in meta["tensors"]:
        n = int(np.prod(shape))
        if scheme in ("fp32", "fp16"):
            t = take("f" if scheme == "fp32" else "h", n)
        else:  # int8/int4: per-output-channel integers times a float16 scale
            t = take("q" if scheme == "int8" else "p", n).reshape(shape[0], -1)
            t = t * take("h", shape[0])[:, None]
        out.append(t.reshape(shape))
    return out


def conv(x, w, b, stride, pad, groups):
    """w: (out, in/groups, k, k) as in torch; groups is 1 or every channel (depthwise)."""
    k = w.shape[2]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, v = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    taps = [x[:, i:i + stride * h:stride, j:j + stride * v:stride]
            for i in range(k) for j in range(k)]
    if groups == 1:  # the k*k shifted copies side by side, then one matrix product
        y = np.concatenate(taps, 3) @ w.transpose(2, 3, 1, 0).reshape(-1, len(w))
    else:
        y = sum(t * w[:, 0, i // k, i % k] for i, t in enumerate(taps))
    return y + b


def maxpool(x):
    """2x2 max-pool, stride 2 (an odd last row or column is dropped, as in torch)."""
    n, h, v, c = x.shape
    return x[:, :h // 2 * 2, :v // 2 * 2].reshape(n, h // 2, 2, v // 2, 2, c).max((2, 4))


LAYERS = {"relu": lambda x: np.maximum(x, 0), "relu6": lambda x: np.clip(x, 0, 6),
          "max": maxpool, "mean": lambda x: x.mean((1, 2), keepdims=True),
          "flat": lambda x: x.transpose(0, 3, 1, 2).reshape(len(x), -1)}  # torch's order


def run(plan, x, ws):
    """Apply the plan's layers to x, taking weights from the iterator ws."""
    for op, *a in plan:
        if op in ("conv", "fc"):
            w, b = next(ws), (next(ws) if a[-1] else 0)
            x = conv(x, w, b, *a[:3]) if op == "conv" else x @ w.T + b
        elif op == "add":  # a residual: the sum of two branches
            x = run(a[0], x, ws) + run(a[1], x, ws)
        else:
            x = LAYERS[op](x)
    return x


def logits(images, ws, plan, batch=256, tell=False):
    """(N, 7) float32 mean logits of uint8 images (N, 48, 48) and their mirrors
    (`tell`: a line on stderr every tenth of them)."""
    out, n = [], len(images)
    for s in range(0, n, batch):
        x = (images[s:s + batch, :, :, None].astype(np.float32) - 129.5) / 65.0
        y = run(plan, np.concatenate([x, x[:, :, ::-1]]), iter(ws))
        out.append((y[:len(x)] + y[len(x):]) / 2)
        if tell and (s + len(x)) * 10 // n > s * 10 // n:
            print(f"predict.py: {s + len(x):,}/{n:,} images", file=sys.stderr, flush=True)
    return np.concatenate(out)


def read(path):
    """test.csv (id,feature) -> uint8 images (N, 48, 48) by id 0..N-1."""
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError as e:
        sys.exit(f"{path}: cannot read it ({e.strerror})")
    if [h.strip().lower() for h in lines[:1]] != ["id,feature"]:
        sys.exit(f"{path} line 1: need the header id,feature")
    rows = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            i, f = line.split(",")
            p = np.array(f.split(), np.int64)
            if len(p) != 2304 or p.min() < 0 or p.max() > 255 or int(i) in rows:
                raise ValueError
        except ValueError:
            sys.exit(f"{path} line {n}: need a new id, a comma and 2304 pixels 0..255")
        rows[int(i)] = p.astype(np.uint8)
    if not rows or sorted(rows) != list(range(len(rows))):
        sys.exit(f"{path}: need rows with the ids 0..N-1, one each ({len(rows)} rows)")
    return np.stack([rows[i] for i in range(len(rows))]).reshape(-1, 48, 48)


if __name__ == "__main__":  # check both files first: a bad one costs a line, not minutes
    src, out = (sys.argv[1:] + ["", ""])[:2]
    if not src or Path(out).is_dir() or not Path(out).resolve().parent.is_dir():
        sys.exit(f"{out or 'out.csv'}: need a test.csv and an out.csv whose folder exists")
    x = read(src)
    plan = json.loads((HERE / "plan.json").read_text())
    y = logits(x, tensors(HERE / "model.npz"), plan, tell=True).argmax(1)
    with open(out, "w") as f:
        f.write("id,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(y)))
