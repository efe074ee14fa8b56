#!/usr/bin/env python3
"""PyTorch reference for the headline example (`cargo run --release --example digits`).

The same model (conv(1->16,3x3,pad1)-relu-maxpool2-conv(16->32,3x3,pad1)-relu-maxpool2-
linear(128->10)), optimiser (Adam, lr 3e-3, cosine annealing per step to 0), batch size
(32), epochs (30) and an 80/20 split of data/digits.csv.gz. Prints the test accuracy,
the whole run's wall time and the median time of one training step.

Usage: python3 tools/bench/digits_torch.py [--threads 2] [--epochs 30] [--seed 0]
"""
import argparse
import gzip
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="data/digits.csv.gz")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rows = [list(map(float, l.split(","))) for l in gzip.open(a.data, "rt").read().split("\n") if l.strip()]
    data = torch.tensor(rows)
    x, y = data[:, :64] / 16.0, data[:, 64].long()
    perm = torch.randperm(len(x))
    n_test = int(round(0.2 * len(x)))
    te, tr = perm[:n_test], perm[n_test:]
    xtr, ytr, xte, yte = x[tr].view(-1, 1, 8, 8), y[tr], x[te].view(-1, 1, 8, 8), y[te]
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10))
    bs = 32
    steps = (len(xtr) + bs - 1) // bs
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs * steps, 0.0)
    step_times = []
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        p = torch.randperm(len(xtr))
        for i in range(0, len(xtr), bs):
            idx = p[i:i + bs]
            ts = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
            step_times.append(time.perf_counter() - ts)
    wall = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    print(f"torch {torch.__version__}, {a.threads} threads: test accuracy {acc:.4f}, "
          f"{a.epochs} epochs in {wall:.2f} s, median step {statistics.median(step_times) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
