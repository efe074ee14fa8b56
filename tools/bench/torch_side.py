#!/usr/bin/env python3
"""PyTorch side of `cargo xtask bench`: the same workloads as the Rust side.

Usage: python3 tools/bench/torch_side.py --threads 2 --rounds 1 [--only W1,W2]
Prints one JSON object per line: {"workload": ..., "unit": ..., "value": ...}.
The value is the median over `--reps` timed repetitions after warm-up; xtask
alternates this script with the Rust side for several rounds.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timeit(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def emit(name, unit, value):
    print(json.dumps({"workload": name, "unit": unit, "value": value}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--only", default="")
    ap.add_argument("--rss", action="store_true", help="run 300 W5 steps and report max RSS only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    only = set(a.only.split(",")) if a.only else None
    want = lambda w: only is None or w in only
    print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads()}), file=sys.stderr)

    if a.rss:
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
        for _ in range(300):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        emit("W5 peak RSS", "MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        return

    if want("W1"):
        for n in [256, 1024, 2048]:
            a_, b_ = torch.randn(n, n), torch.randn(n, n)
            t = timeit(lambda: torch.matmul(a_, b_), max(3, a.reps // (1 if n < 2048 else 2)))
            emit(f"W1 matmul {n}", "GFLOP/s", 2 * n ** 3 / t / 1e9)
    if want("W2"):
        n = 16 * 1024 * 1024
        x, y = torch.randn(n), torch.randn(n)
        t = timeit(lambda: x + y, a.reps)
        emit("W2 add 16M", "GB/s", 3 * 4 * n / t / 1e9)
        t = timeit(lambda: torch.relu(x), a.reps)
        emit("W2 relu 16M", "GB/s", 2 * 4 * n / t / 1e9)
        m, v = torch.randn(4096, 4096), torch.randn(4096)
        t = timeit(lambda: m + v, a.reps)
        emit("W2 bcast add 4096x4096+4096", "GB/s", (2 * 4 * 4096 * 4096 + 4 * 4096) / t / 1e9)
    if want("W3"):
        n = 16 * 1024 * 1024
        x = torch.randn(n)
        t = timeit(lambda: x.sum(), a.reps)
        emit("W3 sum 16M", "GB/s", 4 * n / t / 1e9)
        s = torch.randn(4096, 1024)
        t = timeit(lambda: torch.softmax(s, dim=-1), a.reps)
        emit("W3 softmax 4096x1024", "GB/s", 2 * 4 * 4096 * 1024 / t / 1e9)
    if want("W4"):
        x = torch.randn(32, 32, 32, 32)
        conv = nn.Conv2d(32, 64, 3, padding=1)
        with torch.no_grad():
            t = timeit(lambda: conv(x), a.reps)
        emit("W4 conv2d fwd", "ms", t * 1e3)
        xr = x.clone().requires_grad_()

        def fb():
            conv.zero_grad()
            xr.grad = None
            conv(xr).sum().backward()

        emit("W4 conv2d fwd+bwd", "ms", timeit(fb, a.reps) * 1e3)
    if want("W5"):
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        emit("W5 MLP Adam step", "ms", timeit(step, a.reps * 3) * 1e3)
    if want("W6"):
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1568, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        emit("W6 CNN SGD step", "ms", timeit(step, a.reps * 3) * 1e3)
    for w, name, model_name in (("W8", "W8 GPT AdamW step", "GPT"), ("W9", "W9 LSTM AdamW step", "LstmLm")):
        if not want(w):
            continue
        # One training step of a char_lm model (tools/bench/char_lm_torch.py's GPT / LstmLm).
        import os
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import char_lm_torch

        model = getattr(char_lm_torch, model_name)(65)
        ps = list(model.parameters())
        opt = torch.optim.AdamW([{"params": [p for p in ps if p.dim() >= 2], "weight_decay": 0.1},
                                 {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.99))
        x, y = torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x).view(-1, 65), y.view(-1)).backward()
            torch.nn.utils.clip_grad_norm_(ps, 1.0)
            opt.step()

        emit(name, "ms", timeit(step, a.reps * 3) * 1e3)
    if want("W10"):
        for t_len in [64, 256, 1024]:
            q, k, v = (torch.randn(4, 4, t_len, 32, requires_grad=True) for _ in range(3))
            g = torch.randn(4, 4, t_len, 32)

            def fb():
                for x in (q, k, v):
                    x.grad = None
                (F.scaled_dot_product_attention(q, k, v, is_causal=True) * g).sum().backward()

            emit(f"W10 attention fwd+bwd T={t_len}", "ms", timeit(fb, a.reps) * 1e3)
    if want("W7"):
        a_ = torch.randn(4, 4, requires_grad=True)
        b_ = torch.randn(4, 4, requires_grad=True)

        def g():
            for _ in range(1000):
                ((a_ + b_) * b_).sum().backward()

        emit("W7 graph add-mul-sum-backward", "us", timeit(g, 5) / 1000 * 1e6)
        x_, y_ = torch.randn(4, 4), torch.randn(4, 4)

        def s():
            for _ in range(1000):
                x_ + y_

        emit("W7 single 4x4 add", "us", timeit(s, 5) / 1000 * 1e6)


if __name__ == "__main__":
    main()
