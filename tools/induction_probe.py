#!/usr/bin/env python3
"""Does a GPT-2 of the demo model's shape grow an induction head on a corpus?

Why: the demo model (`patchbench train-demo`) long solved its induction task
with fixed-offset heads in layer 0 instead of an induction head. Before
blaming the data we wanted to rule out patchbench's own training path (its
forward pass, backward, AdamW). This script trains Hugging Face's
GPT2LMHeadModel, same shape (4 layers, d_model 128, 4 heads, 64 positions,
vocabulary 205, tied embeddings), same optimiser settings (AdamW betas 0.9 /
0.98, weight decay on matrices only, warm-up then cosine to a tenth, gradient
norm clipped to 1), in PyTorch on synthetic induction corpora of the same
kinds `train-demo` can generate, and prints every 250 steps:

  loss  the mean training loss over the last 250 steps
  acc   held-out accuracy on the second copy of a fresh 8-word span with
        6 random words before and between the copies (train-demo's "moved")
  ind   the head with the highest induction score on those prompts
  prev  the head with the highest previous-token score

What it showed (2 cores, one thread, ~0.13 s per step): on documents of
distinct random words with random words before and between the copies the
loss sits at ln(pool) for thousands of steps, exactly as in patchbench.
No partial solution pays: a word never occurs earlier unless it is in the
second copy, so copying from context only helps once the model can already
tell the copy has begun. Packing documents end to end (`--pack`) does not help
on its own, since pure random words give no reason for a previous-token head;
in patchbench, packing the real mixed corpus (where following the templates
at any offset needs the previous word) is what grew the induction head.

Usage (torch and transformers from pip; nothing is written):
    python tools/induction_probe.py --steps 3000 --prefix 16 --gap 24
    python tools/induction_probe.py --steps 3000 --prefix 0 --gap 0 --smin 8 --smax 24 --repl
"""

import argparse
import math
import random
import time

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

VOCAB = 205
FIRST_WORD = 50  # pool words are ids FIRST_WORD .. FIRST_WORD + pool
SEPARATOR = 1  # "." in the demo vocabulary


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--wd", type=float, default=0.1, help="weight decay on matrices")
    p.add_argument("--batch", type=int, default=32, help="rows per step")
    p.add_argument("--prefix", type=int, default=16, help="at most this many random words before the span")
    p.add_argument("--gap", type=int, default=24, help="at most this many random words between the copies")
    p.add_argument("--smin", type=int, default=4, help="shortest span")
    p.add_argument("--smax", type=int, default=12, help="longest span")
    p.add_argument("--pool", type=int, default=150, help="words the documents are drawn from")
    p.add_argument("--repl", action="store_true", help="draw words with replacement (default: all distinct)")
    p.add_argument("--pack", action="store_true", help="pack documents end to end into 64-token rows")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def document(a, rng):
    """prefix words, a span, gap words, the span again (word ids)."""
    span = rng.randint(a.smin, a.smax)
    prefix, gap = rng.randint(0, a.prefix), rng.randint(0, a.gap)
    n = prefix + span + gap
    if a.repl:
        words = [rng.randrange(a.pool) for _ in range(n)]
    else:
        words = rng.sample(range(a.pool), n)
    return [FIRST_WORD + w for w in words + words[prefix : prefix + span]]


def batch(a, rng):
    """Token ids [batch, T] and a 0/1 mask of the positions whose next token counts."""
    if a.pack:
        rows = []
        for _ in range(a.batch):
            row = []
            while len(row) < 65:
                row += document(a, rng) + [SEPARATOR]
            rows.append(row[:64])
        return torch.tensor(rows), torch.ones(a.batch, 64)
    docs = [document(a, rng) for _ in range(a.batch)]
    t = max(map(len, docs))
    x = torch.zeros(a.batch, t, dtype=torch.long)
    mask = torch.zeros(a.batch, t)
    for i, d in enumerate(docs):
        x[i, : len(d)] = torch.tensor(d)
        mask[i, : len(d) - 1] = 1
    return x, mask


@torch.no_grad()
def evaluate(model, a, filler=6, span=8, n=100):
    """Accuracy on the second copy, best induction and previous-token heads."""
    rng = random.Random(123)
    rows, prefixes = [], []
    for _ in range(n):
        prefix = rng.randint(0, filler)
        words = rng.sample(range(a.pool), filler + span)
        rows.append([FIRST_WORD + w for w in words + words[prefix : prefix + span]])
        prefixes.append(prefix)
    x = torch.tensor(rows)
    out = model(x, output_attentions=True)
    pred = out.logits.argmax(-1)
    copy = filler + span  # first position of the second copy
    right = sum(int(pred[i, q] == x[i, q + 1]) for i in range(n) for q in range(copy, copy + span - 1))
    best_ind, best_prev = (0, 0, 0.0), (0, 0, 0.0)
    t = x.shape[1]
    for layer, att in enumerate(out.attentions):
        for h in range(att.shape[1]):
            ind = prev = 0.0
            for i in range(n):
                distance = copy - prefixes[i]  # from a word's second occurrence back to its first
                ind += sum(att[i, h, q, q - distance + 1].item() for q in range(copy, t)) / span
                prev += sum(att[i, h, q, q - 1].item() for q in range(1, t)) / (t - 1)
            ind, prev = ind / n, prev / n
            if ind > best_ind[2]:
                best_ind = (layer, h, ind)
            if prev > best_prev[2]:
                best_prev = (layer, h, prev)
    return right / (n * (span - 1)), best_ind, best_prev


def main():
    a = parse()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    cfg = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=128, n_layer=a.layers, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new",
        bos_token_id=None, eos_token_id=None,
    )
    cfg._attn_implementation = "eager"  # attention weights are needed for the scores
    model = GPT2LMHeadModel(cfg)
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() == 2 and "wpe" not in n]
    rest = [p for n, p in named if not (p.dim() == 2 and "wpe" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.wd}, {"params": rest, "weight_decay": 0.0}],
        lr=a.lr, betas=(0.9, 0.98), eps=1e-8,
    )
    warmup = 100

    def lr_at(step):
        if step < warmup:
            return a.lr * (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, a.steps - warmup))
        return a.lr / 10 + 0.9 * a.lr * 0.5 * (1 + math.cos(math.pi * t))

    start, running = time.time(), 0.0
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, mask = batch(a, rng)
        logits = model(x).logits[:, :-1]
        logp = F.log_softmax(logits, -1).gather(-1, x[:, 1:, None])[..., 0]
        m = mask[:, :-1]
        loss = -(logp * m).sum() / m.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += loss.item()
        if (step + 1) % 250 == 0:
            acc, ind, prev = evaluate(model, a)
            print(
                f"step {step + 1} loss {running / 250:.3f} acc {acc:.3f} "
                f"ind L{ind[0]}H{ind[1]} {ind[2]:.2f} prev L{prev[0]}H{prev[1]} {prev[2]:.2f} "
                f"{time.time() - start:.0f}s",
                flush=True,
            )
            running = 0.0


if __name__ == "__main__":
    main()
