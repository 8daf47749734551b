#!/usr/bin/env python3
"""Accuracy of an exported network on a test set, with NumPy and safetensors
only: how an outside client feeds an export (README, "Using an export
outside sparsetrain"), and an independent reading of the file format.
Reproduces `sparsetrain eval` for MLPs and CNNs (convolution, BatchNorm in
evaluation mode, pooling, residual sums, linear layers) on MNIST-format
(`t10k-*-ubyte.gz`) or CIFAR binary (`test_batch.bin`, `test.bin`) data.

    python3 scripts/eval_export.py net.safetensors ../shared/data/mnist

Layout: activations are NHWC; a convolution weight is [out, kh, kw, in],
a linear weight [out, in] over the NHWC-flattened input, BatchNorm's
`running` is [mean; variance].
"""
import gzip, json, os, sys
import numpy as np
from safetensors import safe_open

net, data = sys.argv[1], sys.argv[2]
with safe_open(net, "np") as f:
    meta, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
graph, norm = json.loads(meta["graph"]), json.loads(meta["input_norm"])
c, h, w = map(int, meta["input_shape"].split(","))

def idx(stem, skip):  # an IDX file, gzip-compressed or raw
    gz = f"{data}/{stem}.gz"
    raw = gzip.open(gz).read() if os.path.exists(gz) else open(f"{data}/{stem}", "rb").read()
    return np.frombuffer(raw[skip:], np.uint8)


if any(os.path.exists(f"{data}/t10k-images-idx3-ubyte{z}") for z in ("", ".gz")):
    x = idx("t10k-images-idx3-ubyte", 16).reshape(-1, c, h, w)
    y = idx("t10k-labels-idx1-ubyte", 8)
else:  # CIFAR: label byte(s), then R, G, B planes; in DIR or the archive's folder
    name, labels, folder = ("test_batch.bin", 1, "cifar-10-batches-bin") if int(meta["classes"]) == 10 else (
        "test.bin", 2, "cifar-100-binary")
    path = f"{data}/{name}" if os.path.exists(f"{data}/{name}") else f"{data}/{folder}/{name}"
    rec = np.fromfile(path, np.uint8).reshape(-1, labels + 3072)
    x, y = rec[:, labels:].reshape(-1, 3, 32, 32), rec[:, labels - 1]
mean, std = np.array(norm["mean"])[:, None, None], np.array(norm["std"])[:, None, None]
x = ((x / 255.0 - mean) / std).astype(np.float32).transpose(0, 2, 3, 1)  # NHWC


def conv(x, wt, stride, pad):
    n, hh, ww, ci = x.shape
    o, k = wt.shape[0], wt.shape[1]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (hh + 2 * pad - k) // stride + 1, (ww + 2 * pad - k) // stride + 1
    out = np.zeros((n, oh, ow, o), np.float32)
    for i in range(k):
        for j in range(k):
            patch = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            out += patch @ wt[:, i, j, :].T
    return out


def pool(x, mode, k, s):
    n, hh, ww, ch = x.shape
    oh, ow = (hh - k) // s + 1, (ww - k) // s + 1
    wins = [x[:, i : i + s * oh : s, j : j + s * ow : s, :] for i in range(k) for j in range(k)]
    return np.max(wins, 0) if mode == "max" else np.mean(wins, 0)


vals, prev = {"input": x}, "input"
for n in graph["nodes"]:
    name, kind, st = n["name"], n["kind"], n.get("settings", {})
    ins = [vals[i] for i in n.get("inputs") or [prev]]  # no inputs: the previous node's output
    prev = name
    p = lambda key: t[f"{name}.{key}"]
    if kind == "linear":
        v = ins[0].reshape(len(ins[0]), -1) @ p("weight").T + p("bias")
    elif kind == "relu":
        v = np.maximum(ins[0], 0)
    elif kind == "conv2d":
        v = conv(ins[0], p("weight"), st.get("stride", 1), st.get("pad", 0))
        v = v + p("bias") if st.get("bias") else v
    elif kind == "batchnorm2d":
        run = p("running")
        v = (ins[0] - run[0]) / np.sqrt(run[1] + st.get("eps", 1e-5)) * p("weight") + p("bias")
    elif kind == "pool2d":
        v = pool(ins[0], st["mode"], st["kernel"], st["stride"])
    elif kind == "global_avg_pool":
        v = ins[0].mean((1, 2))
    elif kind == "add":
        if "channels" in st:  # each input's channels placed in the sum
            out_c = 1 + max(max(l) for l in st["channels"] if l)
            v = np.zeros(ins[0].shape[:-1] + (out_c,), np.float32)
            for xi, l in zip(ins, st["channels"]):
                v[..., l] += xi
        else:
            v = ins[0] + ins[1]
    else:
        sys.exit(f"unknown layer kind {kind}")
    vals[name] = v
logits = vals[graph["nodes"][-1]["name"]]
print(f"{(logits.argmax(1) == y).sum()}/{len(y)} correct, accuracy {100 * (logits.argmax(1) == y).mean():.2f}%")
