#!/usr/bin/env python3
"""Accuracy of an exported MLP on an MNIST-format test set, with NumPy and
safetensors only: how an outside client feeds an export (README, "Using an
export outside sparsetrain"). Reproduces `sparsetrain eval`.

    python3 scripts/eval_export.py net.safetensors ../shared/data/mnist
"""
import gzip, json, sys, numpy as np
from safetensors import safe_open
net, data = sys.argv[1], sys.argv[2]  # an export; a directory of MNIST-format .gz files
with safe_open(net, "np") as f:
    meta, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
graph, norm = json.loads(meta["graph"]), json.loads(meta["input_norm"])
read = lambda name, skip: np.frombuffer(gzip.open(f"{data}/{name}").read()[skip:], np.uint8)
x = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, *map(int, meta["input_shape"].split(",")))
y = read("t10k-labels-idx1-ubyte.gz", 8)
x = (x / 255.0 - np.array(norm["mean"])[:, None, None]) / np.array(norm["std"])[:, None, None]
x = x.reshape(len(x), -1).astype(np.float32)
for n in graph["nodes"]:  # an MLP: linear and relu layers, in order
    x = x @ t[n["name"] + ".weight"].T + t[n["name"] + ".bias"] if n["kind"] == "linear" else np.maximum(x, 0)
print(f"{(x.argmax(1) == y).sum()}/{len(y)} correct, accuracy {100 * (x.argmax(1) == y).mean():.2f}%")
