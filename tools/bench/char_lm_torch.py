#!/usr/bin/env python3
"""PyTorch reference for the character-level GPT example (`cargo run --release --example char_lm`).

nanoGPT's shakespeare_char CPU recipe on data/tinyshakespeare.txt.gz (65-character vocabulary,
first 90% of the characters train, the rest validate): a decoder-only GPT with 4 pre-norm blocks,
4 heads, width 128, context 64, exact-erf GELU MLP (128->512->128), biases in every Linear and
LayerNorm, no dropout, the LM head tied to the token embedding. nanoGPT's init (N(0, 0.02), the
residual projections N(0, 0.02/sqrt(2*n_layer)), zero biases). AdamW (the default foreach
implementation, not fused), betas (0.9, 0.99), weight decay 0.1 on >=2-D parameters only; 100
warm-up iterations then cosine decay from 1e-3 to 1e-4 at iteration 2000; gradients clipped to
norm 1.0; batch 12. Loss is evaluated on a fixed set of 20 batches per split at iteration 0,
every --eval-interval iterations and after the last step. Prints the losses, the whole run's
wall time (training and evaluations, after the data is loaded), the median/min/max time of one
training step (batch sampling, forward, backward, clipping, optimiser step) and a 200-character
sample (temperature 0.8, top-k 40). Everything is float32 on the CPU.

--model lstm trains the example's LSTM model instead (embedding 128, two LSTM layers of 256
units, batch_first, a linear decoder; embedding and decoder weights U(-0.1, 0.1), decoder bias
0, the LSTM's default init) with the same recipe.

Usage: python3 tools/bench/char_lm_torch.py [--model gpt|lstm] [--threads 2] [--iters 2000] [--eval-interval 250]
                                            [--seed 0] [--json PATH]
"""
import argparse
import gzip
import json
import math
import statistics
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # numpy is not installed
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

N_LAYER, N_HEAD, N_EMBD, BLOCK, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, DECAY_ITERS = 1e-3, 1e-4, 100, 2000
EVAL_BATCHES = 20
LSTM_HIDDEN, LSTM_LAYERS = 256, 2


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.attn.c_proj = nn.Linear(N_EMBD, N_EMBD)
        self.ln_2 = nn.LayerNorm(N_EMBD)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.mlp.c_proj = nn.Linear(4 * N_EMBD, N_EMBD)

    def attention(self, x):
        B, T, C = x.shape
        q, k, v = self.attn.c_attn(x).split(N_EMBD, dim=2)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.attn.c_proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))  # exact (erf) GELU


class GPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.wte = nn.Embedding(vocab, N_EMBD)
        self.wpe = nn.Embedding(BLOCK, N_EMBD)
        self.h = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD)
        # nanoGPT's _init_weights, then the scaled init of the residual projections
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * N_LAYER))

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # LM head tied to wte, no bias


class LstmLm(nn.Module):
    """--model lstm: PyTorch's word_language_model shape (embedding, stacked LSTM, linear decoder)."""

    def __init__(self, vocab):
        super().__init__()
        self.encoder = nn.Embedding(vocab, N_EMBD)
        self.rnn = nn.LSTM(N_EMBD, LSTM_HIDDEN, LSTM_LAYERS, batch_first=True)
        self.decoder = nn.Linear(LSTM_HIDDEN, vocab)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, idx):
        return self.decoder(self.rnn(self.encoder(idx))[0])


def get_lr(it):  # nanoGPT's get_lr: linear warm-up, then cosine decay to MIN_LR
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    ratio = min((it - WARMUP) / (DECAY_ITERS - WARMUP), 1.0)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def batch(data, gen):
    i = torch.randint(0, len(data) - BLOCK - 1, (BATCH,), generator=gen)
    return (torch.stack([data[j:j + BLOCK] for j in i.tolist()]),
            torch.stack([data[j + 1:j + 1 + BLOCK] for j in i.tolist()]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["gpt", "lstm"], default="gpt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="data/tinyshakespeare.txt.gz")
    ap.add_argument("--json", metavar="PATH")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    text = gzip.open(a.data, "rt", encoding="ascii").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.int64)
    n = int(0.9 * len(data))
    splits = {"train": data[:n], "val": data[n:]}

    model = GPT(len(chars)) if a.model == "gpt" else LstmLm(len(chars))
    n_params = sum(p.numel() for p in model.parameters())  # the tied weight counts once
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.99), eps=1e-8)  # foreach (default), not fused
    train_gen = torch.Generator().manual_seed(a.seed)
    eval_gen = torch.Generator().manual_seed(a.seed + 1)
    eval_sets = {s: [batch(d, eval_gen) for _ in range(EVAL_BATCHES)] for s, d in splits.items()}

    def evaluate():
        model.eval()
        with torch.no_grad():
            out = {s: statistics.fmean(F.cross_entropy(model(x).view(-1, len(chars)), y.view(-1)).item()
                                       for x, y in bs) for s, bs in eval_sets.items()}
        model.train()
        return out

    print(f"torch {torch.__version__}, {a.threads} threads, {n_params} parameters, vocab {len(chars)}, "
          f"{len(splits['train'])} train / {len(splits['val'])} val characters")
    step_times = []
    t0 = time.perf_counter()
    for it in range(a.iters + 1):
        if it % a.eval_interval == 0 or it == a.iters:
            losses = evaluate()
            print(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
        if it == a.iters:
            break
        ts = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        x, y = batch(splits["train"], train_gen)
        loss = F.cross_entropy(model(x).view(-1, len(chars)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step_times.append(time.perf_counter() - ts)
    total = time.perf_counter() - t0
    ms = [t * 1e3 for t in step_times]
    print(f"final: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}; {a.iters} iters in "
          f"{total:.2f} s; step ms median {statistics.median(ms):.3f} (min {min(ms):.3f}, max {max(ms):.3f})")

    # sampling as nanoGPT's generate(): crop to the context, temperature, top-k, multinomial
    gen = torch.Generator().manual_seed(a.seed)
    idx = torch.tensor([[stoi["\n"]]])
    model.eval()
    with torch.no_grad():
        for _ in range(200):
            logits = model(idx[:, -BLOCK:])[:, -1, :] / 0.8
            v, _ = torch.topk(logits, 40)
            logits[logits < v[:, [-1]]] = -float("inf")
            idx = torch.cat([idx, torch.multinomial(F.softmax(logits, dim=-1), 1, generator=gen)], dim=1)
    print("sample:\n" + "".join(chars[i] for i in idx[0, 1:].tolist()))

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"val_loss": losses["val"], "train_loss": losses["train"], "total_s": total,
                       "step_ms_median": statistics.median(ms), "step_ms_min": min(ms),
                       "step_ms_max": max(ms), "params": n_params, "iters": a.iters,
                       "threads": a.threads}, f, indent=2)


if __name__ == "__main__":
    main()
