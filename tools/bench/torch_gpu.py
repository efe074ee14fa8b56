#!/usr/bin/env python3
"""PyTorch side of the CUDA benchmark: the workloads of examples/examples/gpu_bench.rs,
timed the same way (batches of launches between two synchronisations, median of the
per-call times), printed as `RESULT <name> <median> <unit> <min> <max>` lines.

Usage: python3 tools/bench/torch_gpu.py [--reps 15]
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timed(reps, batch, f):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    s = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(batch):
            f()
        torch.cuda.synchronize()
        s.append((time.perf_counter() - t0) / batch)
    s.sort()
    return s[len(s) // 2], s[0], s[-1]


def report(name, unit, t, rate=None):
    if unit == "ms":
        med, lo, hi = t[0] * 1e3, t[1] * 1e3, t[2] * 1e3
    else:
        med, lo, hi = rate(t[0]), rate(t[2]), rate(t[1])
    print(f"RESULT {name} {med:.4f} {unit} {lo:.4f} {hi:.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    dev = torch.device("cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 64 << 20
    x, y = torch.randn(n, device=dev), torch.randn(n, device=dev)
    dst = torch.empty(n, device=dev)
    report("copy_64M_f32", "GB/s", timed(a.reps, 10, lambda: dst.copy_(x)), lambda s: 8.0 * n / s / 1e9)
    report("add_64M_f32", "GB/s", timed(a.reps, 10, lambda: x + y), lambda s: 12.0 * n / s / 1e9)
    del x, y, dst
    s = torch.randn(4096, 4096, device=dev)
    report("softmax_4096x4096_f32", "GB/s", timed(a.reps, 10, lambda: torch.softmax(s, -1)),
           lambda t: 8.0 * 4096 * 4096 / t / 1e9)
    m = 4096
    flops = 2.0 * m * m * m
    p, q = torch.randn(m, m, device=dev), torch.randn(m, m, device=dev)
    report("matmul_4096_f32", "TFLOP/s", timed(a.reps, 3, lambda: p @ q), lambda t: flops / t / 1e12)
    torch.backends.cuda.matmul.allow_tf32 = True
    report("matmul_4096_tf32", "TFLOP/s", timed(a.reps, 5, lambda: p @ q), lambda t: flops / t / 1e12)
    torch.backends.cuda.matmul.allow_tf32 = False
    pb, qb = p.bfloat16(), q.bfloat16()
    report("matmul_4096_bf16", "TFLOP/s", timed(a.reps, 10, lambda: pb @ qb), lambda t: flops / t / 1e12)
    del p, q, pb, qb, s

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xb = torch.rand(32, 1, 8, 8, device=dev)
    yb = torch.randint(0, 10, (32,), device=dev)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()

    report("digits_cnn_step", "ms", timed(a.reps, 20, step))


if __name__ == "__main__":
    main()
