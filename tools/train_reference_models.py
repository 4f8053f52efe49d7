#!/usr/bin/env python3
"""Train the strata reference models on Fashion-MNIST and export them to ONNX.

Four small architectures (ResNet-20, MobileNetV2-style, VGG-style, ViT) are
trained with fixed seeds on Fashion-MNIST and exported to ONNX (opset 17,
input `input` N x 1 x 28 x 28 float32 already normalised, output `logits`
N x 10, dynamic batch axis). The script also writes the evaluation and
calibration data fixtures and a metrics.json.

Usage:
    python3 tools/train_reference_models.py --out tests/fixtures
        -> <out>/models/{resnet20,mobilenetv2,vgg,vit}.onnx
           <out>/models/metrics.json
           <out>/data/fmnist-eval-1000.npz
           <out>/data/fmnist-calib-512.npz

    python3 tools/train_reference_models.py --untrained --out tmp/untrained
        -> <out>/{resnet20,mobilenetv2,vgg,vit}.onnx with seeded random
           weights (no training, no data needed)

Requirements: torch, onnx, numpy. Fashion-MNIST is read from the gzipped IDX
files (by default where the Debian package dataset-fashion-mnist installs
them; override with --data-dir).
"""

import argparse
import gzip
import json
import os
import random
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
SEED = 20240601
OPSET = 17
NUM_CLASSES = 10
# Normalisation applied to every image: (x / 255 - MEAN) / STD.
# These are the Fashion-MNIST training-set pixel mean and standard deviation;
# the script recomputes them and stores both values in metrics.json.
NORM_MEAN = 0.2860
NORM_STD = 0.3530

MODEL_NAMES = ("resnet20", "mobilenetv2", "vgg", "vit")


# --------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, add skip, ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                nn.BatchNorm2d(cout),
            )
        else:
            self.shortcut = None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


class ResNet20(nn.Module):
    """CIFAR-style ResNet-20: 3 stages x 3 BasicBlocks (16/32/64 channels)."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks = []
        cin = 16
        for cout, first_stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(BasicBlock(cin, cout, first_stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def conv_bn_relu6(cin, cout, kernel, stride, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """[1x1 expand-BN-ReLU6] -> 3x3 depthwise-BN-ReLU6 -> 1x1 project-BN (+ skip)."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1, 1))
        layers.append(conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden))
        layers.append(nn.Conv2d(hidden, cout, 1, 1, 0, bias=False))
        layers.append(nn.BatchNorm2d(cout))
        self.body = nn.Sequential(*layers)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x):
        out = self.body(x)
        return x + out if self.use_skip else out


# (expansion t, output channels c, repeats n, first stride s)
MOBILENETV2_SETTINGS = (
    (1, 16, 1, 2),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 3, 1),
)
MOBILENETV2_STEM = 32
MOBILENETV2_LAST = 256


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.stem = conv_bn_relu6(1, MOBILENETV2_STEM, 3, 1)
        blocks = []
        cin = MOBILENETV2_STEM
        for t, c, n, s in MOBILENETV2_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.last = conv_bn_relu6(cin, MOBILENETV2_LAST, 1, 1)
        self.fc = nn.Linear(MOBILENETV2_LAST, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks(x)
        x = self.last(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


# Channels per stage; a max-pool (2x2) follows every stage but the last.
VGG_STAGES = ((24, 24), (48, 48, 48), (96, 96, 96))


class VGG(nn.Module):
    """Plain chain of conv3x3-BN-ReLU, max-pools between stages, no skips."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        layers = []
        cin = 1
        for si, stage in enumerate(VGG_STAGES):
            for cout in stage:
                layers += [
                    nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
                cin = cout
            if si != len(VGG_STAGES) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


# Some CPU builds of torch (Debian's among them) link a generic reference BLAS,
# on which the matrix products of the transformer (F.linear, torch.matmul) run
# 10-20x slower than oneDNN convolutions computing the same sums. In eager mode
# (training and evaluation) the ViT therefore routes its products through 1x1
# convolutions; under torch.onnx.export (tracing) it uses the plain operators,
# so the exported graph holds ordinary MatMul / Add nodes. The parameters and
# the results are those of nn.Linear and torch.matmul.


def batched_matmul(a, b):
    """a @ b for a: (..., N, K), b: (..., K, M) with equal leading dims."""
    if torch.jit.is_tracing():
        return torch.matmul(a, b)
    lead = a.shape[:-2]
    n, k, m = a.shape[-2], a.shape[-1], b.shape[-1]
    a3 = a.reshape(-1, n, k)
    groups = a3.shape[0]
    # One group per matrix: input channels are the K columns of a, the N rows
    # are pixels, and the M columns of b are the (data-dependent) 1x1 filters.
    inp = a3.transpose(1, 2).reshape(1, groups * k, n, 1)
    w = b.reshape(-1, k, m).transpose(1, 2).reshape(groups * m, k, 1, 1)
    out = F.conv2d(inp, w, groups=groups)  # 1, groups * M, N, 1
    return out.reshape(groups, m, n).transpose(1, 2).reshape(lead + (n, m))


class TokenLinear(nn.Linear):
    """nn.Linear whose eager forward runs as a 1x1 convolution (see above)."""

    def forward(self, x):
        if torch.jit.is_tracing():
            return F.linear(x, self.weight, self.bias)
        rows = x.reshape(-1, self.in_features, 1, 1)
        w = self.weight.reshape(self.out_features, self.in_features, 1, 1)
        out = F.conv2d(rows, w, self.bias)
        return out.reshape(x.shape[:-1] + (self.out_features,))


class Attention(nn.Module):
    """Multi-head self-attention written out by hand (no nn.MultiheadAttention)."""

    def __init__(self, dim, heads, tokens):
        super().__init__()
        self.dim = dim
        self.tokens = tokens
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = TokenLinear(dim, dim * 3)
        self.proj = TokenLinear(dim, dim)

    def forward(self, x):
        # Token count and width are fixed Python ints (only the batch is
        # dynamic), so the exported Reshapes take constant shapes.
        n, d = self.tokens, self.dim
        qkv = self.qkv(x).reshape(-1, n, 3, self.heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # 3, B, H, N, Dh
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = batched_matmul(q, k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        out = batched_matmul(attn, v)  # B, H, N, Dh
        out = out.transpose(1, 2).reshape(-1, n, d)
        return self.proj(out)


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = TokenLinear(dim, hidden)
        self.fc2 = TokenLinear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm: x = x + Attn(LN(x)); x = x + MLP(LN(x))."""

    def __init__(self, dim, heads, mlp_dim, tokens):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


VIT_PATCH = 4
VIT_DIM = 64
VIT_DEPTH = 6
VIT_HEADS = 4
VIT_MLP = 128


class ViT(nn.Module):
    """Small pre-norm ViT: 4x4 patches (49 tokens), mean pooling, no class token."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        tokens = (28 // VIT_PATCH) ** 2
        self.tokens = tokens
        self.patch = nn.Conv2d(1, VIT_DIM, VIT_PATCH, VIT_PATCH)
        self.pos = nn.Parameter(torch.zeros(1, tokens, VIT_DIM))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(
            *[TransformerBlock(VIT_DIM, VIT_HEADS, VIT_MLP, tokens) for _ in range(VIT_DEPTH)]
        )
        self.norm = nn.LayerNorm(VIT_DIM)
        self.head = nn.Linear(VIT_DIM, num_classes)

    def forward(self, x):
        x = self.patch(x)  # B, D, 7, 7
        x = x.reshape(-1, VIT_DIM, self.tokens).transpose(1, 2)  # B, 49, D
        x = x + self.pos
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1))


BUILDERS = {
    "resnet20": ResNet20,
    "mobilenetv2": MobileNetV2,
    "vgg": VGG,
    "vit": ViT,
}

# Training recipe per model: epochs over the training subset, optimiser, peak
# learning rate, weight decay. All use batch 128 and a one-cycle schedule.
# Epoch counts are sized for a small shared CPU budget: about 35 CPU-minutes
# for all four, single-threaded (see --threads).
RECIPES = {
    "resnet20": {"epochs": 2, "optimizer": "sgd", "lr": 0.1, "wd": 5e-4},
    "mobilenetv2": {"epochs": 2, "optimizer": "sgd", "lr": 0.1, "wd": 4e-5},
    "vgg": {"epochs": 2, "optimizer": "sgd", "lr": 0.1, "wd": 5e-4},
    "vit": {"epochs": 2, "optimizer": "adamw", "lr": 2e-3, "wd": 0.05},
}
# Models trained in channels-last layout (faster oneDNN convolutions on CPU;
# depthwise-heavy MobileNetV2 is slower that way). Training only: the
# weights are returned to the default layout before evaluation and export.
CHANNELS_LAST = ("resnet20", "vgg")
BATCH_SIZE = 128


def structure_counts():
    """Expected structure of each architecture (documented in the README)."""
    mb = []
    cin = MOBILENETV2_STEM
    for t, c, n, s in MOBILENETV2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            mb.append({"expand": t, "in": cin, "out": c, "stride": stride,
                       "identity_skip": stride == 1 and cin == c})
            cin = c
    return {
        "resnet20": {"residual_blocks": 9, "identity_skips": 7, "projection_skips": 2,
                     "convs": 1 + 9 * 2 + 2, "linears": 1},
        "mobilenetv2": {"inverted_residual_blocks": len(mb),
                        "identity_skips": sum(b["identity_skip"] for b in mb),
                        "blocks_without_expansion": sum(b["expand"] == 1 for b in mb),
                        "convs": 1 + sum(3 if b["expand"] != 1 else 2 for b in mb) + 1,
                        "linears": 1},
        "vgg": {"convs": sum(len(s) for s in VGG_STAGES), "skips": 0,
                "maxpools": len(VGG_STAGES) - 1, "linears": 1},
        "vit": {"transformer_blocks": VIT_DEPTH, "residual_adds": 2 * VIT_DEPTH,
                "heads": VIT_HEADS, "dim": VIT_DIM, "mlp_dim": VIT_MLP,
                "tokens": (28 // VIT_PATCH) ** 2, "patch": VIT_PATCH,
                "pooling": "mean"},
    }


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_fashion_mnist(data_dir):
    def imgs(name):
        return read_idx(os.path.join(data_dir, name))

    return {
        "train_x": imgs("train-images-idx3-ubyte.gz"),
        "train_y": imgs("train-labels-idx1-ubyte.gz").astype(np.int64),
        "test_x": imgs("t10k-images-idx3-ubyte.gz"),
        "test_y": imgs("t10k-labels-idx1-ubyte.gz").astype(np.int64),
    }


def normalise(images_u8):
    x = images_u8.astype(np.float32) / 255.0
    x = (x - np.float32(NORM_MEAN)) / np.float32(NORM_STD)
    return x[:, None, :, :].astype(np.float32)


def eval_fixture_indices(labels, per_class=100):
    """First `per_class` test images of each class, in test-set order."""
    picked = []
    for c in range(NUM_CLASSES):
        picked.extend(np.nonzero(labels == c)[0][:per_class].tolist())
    return np.array(sorted(picked), dtype=np.int64)


# --------------------------------------------------------------------------
# Training / evaluation / export
# --------------------------------------------------------------------------


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def randomise_norm_layers(model, gen):
    """Give BatchNorm/LayerNorm layers non-trivial seeded statistics.

    Freshly initialised norms are all ones/zeros; after BN folding the exporter
    would then deduplicate the identical folded tensors into Identity nodes,
    which a trained model does not have. Random values keep the untrained
    graphs shaped like the trained ones.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                shape = m.weight.shape
                m.weight.copy_(1.0 + 0.1 * torch.randn(shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(shape, generator=gen))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(shape, generator=gen))
                m.running_var.copy_(1.0 + 0.1 * torch.rand(shape, generator=gen))


def count_params(model):
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(x[i:i + batch]))
        correct += int((logits.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / len(x)


def train(name, model, x, y, recipe, seed, log):
    epochs = recipe["epochs"]
    steps_per_epoch = (len(x) + BATCH_SIZE - 1) // BATCH_SIZE
    if recipe["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=0.9,
                              nesterov=True, weight_decay=recipe["wd"])
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"],
                                weight_decay=recipe["wd"])
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe["lr"], total_steps=epochs * steps_per_epoch,
        pct_start=0.25)
    order_rng = np.random.RandomState(seed)
    cpu_start = time.process_time()
    layout = torch.channels_last if name in CHANNELS_LAST else torch.contiguous_format
    model.to(memory_format=layout)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = order_rng.permutation(len(x))
        total_loss, seen, correct = 0.0, 0, 0
        for i in range(0, len(x), BATCH_SIZE):
            idx = perm[i:i + BATCH_SIZE]
            xb = torch.from_numpy(x[idx]).contiguous(memory_format=layout)
            yb = torch.from_numpy(y[idx])
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=0.1 if name == "vit" else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss) * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        log(f"[{name}] epoch {epoch + 1}/{epochs} loss {total_loss / seen:.4f} "
            f"train-acc {correct / seen:.4f} elapsed {time.time() - start:.0f}s")
    wall = time.time() - start
    cpu = time.process_time() - cpu_start
    model.to(memory_format=torch.contiguous_format)
    return wall, cpu


def export_onnx(model, path):
    import onnx

    model.eval()
    dummy = torch.zeros(1, 1, 28, 28, dtype=torch.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.onnx.export(
        model,
        dummy,
        tmp,
        export_params=True,
        opset_version=OPSET,
        do_constant_folding=True,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(tmp)
    onnx.checker.check_model(proto, full_check=True)
    os.replace(tmp, path)
    ops = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return dict(sorted(ops.items()))


def write_atomic(path, write):
    """Write via a temporary file and rename, so that concurrent runs (one
    per --models subset) never leave a half-written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def save_npz(path, **arrays):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    write_atomic(path, write)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True,
                        help="output directory (e.g. tests/fixtures)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="directory with the gzipped Fashion-MNIST IDX files")
    parser.add_argument("--untrained", action="store_true",
                        help="export seeded random weights without training")
    parser.add_argument("--models", default=",".join(MODEL_NAMES),
                        help="comma-separated subset of " + ",".join(MODEL_NAMES))
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on the first N images of a seeded shuffle "
                             "of the training set (0 = all 60000)")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every recipe's epoch count (for quick trials)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (the committed fixtures "
                             "used 1; the result can differ in the last bits "
                             "with another count)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if n not in BUILDERS:
            parser.error(f"unknown model {n!r}")

    def log(msg):
        print(msg, flush=True)

    if args.untrained:
        for name in names:
            seed = SEED + MODEL_NAMES.index(name)
            seed_everything(seed)
            model = BUILDERS[name]()
            randomise_norm_layers(model, torch.Generator().manual_seed(seed))
            model.eval()
            path = os.path.join(args.out, f"{name}.onnx")
            ops = export_onnx(model, path)
            log(f"{name}: {count_params(model)} params -> {path} ops {ops}")
        return 0

    models_dir = os.path.join(args.out, "models")
    data_dir = os.path.join(args.out, "data")
    os.makedirs(models_dir, exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)

    seed_everything(SEED)
    ds = load_fashion_mnist(args.data_dir)
    train_f = ds["train_x"].astype(np.float64) / 255.0
    measured_mean, measured_std = float(train_f.mean()), float(train_f.std())
    del train_f
    log(f"train pixel mean {measured_mean:.4f} std {measured_std:.4f} "
        f"(using {NORM_MEAN}/{NORM_STD})")

    train_x, train_y = normalise(ds["train_x"]), ds["train_y"]
    test_x, test_y = normalise(ds["test_x"]), ds["test_y"]

    if args.train_subset and args.train_subset < len(train_x):
        sub = np.random.RandomState(SEED).permutation(len(train_x))[:args.train_subset]
        sub.sort()
        train_x, train_y = train_x[sub], train_y[sub]

    eval_idx = eval_fixture_indices(test_y)
    eval_x, eval_y = test_x[eval_idx], test_y[eval_idx]
    calib_x, calib_y = normalise(ds["train_x"][:512]), ds["train_y"][:512]
    save_npz(os.path.join(data_dir, "fmnist-eval-1000.npz"), input=eval_x, labels=eval_y)
    save_npz(os.path.join(data_dir, "fmnist-calib-512.npz"), input=calib_x, labels=calib_y)

    metrics_path = os.path.join(models_dir, "metrics.json")

    counts = structure_counts()
    for name in names:
        seed = SEED + MODEL_NAMES.index(name)
        seed_everything(seed)
        model = BUILDERS[name]()
        recipe = dict(RECIPES[name])
        recipe["epochs"] = max(1, int(round(recipe["epochs"] * args.epochs_scale)))
        log(f"[{name}] {count_params(model)} params, recipe {recipe}, "
            f"{len(train_x)} training images")
        wall, cpu = train(name, model, train_x, train_y, recipe, seed, log)
        test_acc = accuracy(model, test_x, test_y)
        eval_acc = accuracy(model, eval_x, eval_y)
        path = os.path.join(models_dir, f"{name}.onnx")
        ops = export_onnx(model, path)
        log(f"[{name}] test-acc {test_acc:.4f} eval-1000-acc {eval_acc:.4f} "
            f"train {wall:.0f}s wall {cpu:.0f}s cpu -> {path}")
        entry = {
            "file": f"models/{name}.onnx",
            "parameters": count_params(model),
            "test_accuracy": round(test_acc, 4),
            "eval_fixture_accuracy": round(eval_acc, 4),
            "epochs": recipe["epochs"],
            "optimizer": recipe["optimizer"],
            "peak_lr": recipe["lr"],
            "weight_decay": recipe["wd"],
            "batch_size": BATCH_SIZE,
            "training_subset_size": int(len(train_x)),
            "seed": seed,
            "threads": args.threads,
            "opset": OPSET,
            "torch_version": torch.__version__,
            "training_wall_time_s": round(wall, 1),
            "training_cpu_time_s": round(cpu, 1),
            "structure": counts[name],
            "onnx_ops": ops,
            "onnx_file_bytes": os.path.getsize(path),
        }
        # Merge with what is already there (other models, other runs).
        metrics = {}
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                metrics = json.load(f).get("models", {})
        metrics[name] = entry

        def write_metrics(tmp):
            with open(tmp, "w") as f:
                json.dump({
                    "dataset": "Fashion-MNIST",
                    "normalisation": {"mean": NORM_MEAN, "std": NORM_STD,
                                      "measured_train_mean": round(measured_mean, 4),
                                      "measured_train_std": round(measured_std, 4)},
                    "eval_fixture": "fmnist-eval-1000.npz: first 100 test images "
                                    "of each class, in test-set order",
                    "calib_fixture": "fmnist-calib-512.npz: first 512 training images",
                    "models": {k: metrics[k] for k in MODEL_NAMES if k in metrics},
                }, f, indent=2)
                f.write("\n")

        write_atomic(metrics_path, write_metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
