"""Times TransformerLens's batched activation patching on a dataset.

The pairs come from `patchbench bench dataset --dump FILE` (token ids, so
no tokenizer is needed); the model is a randomly initialised HookedTransformer
of GPT-2 small's shape (timing does not depend on the weights). For each
target it runs TransformerLens's `get_act_patch_*` (one forward per cell,
each patching every prompt of the batch) and prints the wall time, to set
beside `patchbench bench dataset`'s on the same machine:

    patchbench bench dataset -m random:gpt2-small --dump /tmp/pairs.json
    python3 tools/tl_dataset_bench.py /tmp/pairs.json

It needs TransformerLens 3.x (4.0 removed HookedTransformer). Beside a 4.x
environment, the 3.9.0 package alone is enough (its other dependencies are
4.x's, plus better-abc):

    pip install --target /tmp/tl3 --no-deps transformer_lens==3.9.0 better-abc
    PYTHONPATH=/tmp/tl3 python3 tools/tl_dataset_bench.py /tmp/pairs.json

Arguments: the pairs file, then optionally the torch thread count (as
patchbench's, for a fair comparison), the targets (comma-separated,
default `head_out,resid_pre`) and a JSON file for the numbers. Each target
reports wall and CPU seconds (CPU time is the steadier figure on a shared
machine) and prints its progress every 16 cells on stderr.
"""

import json
import resource
import sys
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching


def main(path, threads=None, targets="head_out,resid_pre", out=None):
    if threads:
        torch.set_num_threads(int(threads))
    d = json.load(open(path))
    clean = torch.tensor(d["clean"])
    corrupted = torch.tensor(d["corrupted"])
    answer = torch.tensor(d["answer"])
    wrong = torch.tensor(d["wrong"])
    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
        n_ctx=1024, act_fn="gelu_new", normalization_type="LN", seed=0,
    )
    model = HookedTransformer(cfg)
    model.eval()
    torch.set_grad_enabled(False)
    _, clean_cache = model.run_with_cache(clean)
    rows = torch.arange(len(answer))

    cells = [0]

    def metric(logits):
        cells[0] += 1
        if cells[0] % 16 == 0:
            print(f"  {cells[0]} cells, {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                  flush=True)
        last = logits[:, -1]
        return (last[rows, answer] - last[rows, wrong]).mean()

    print(f"TransformerLens {len(answer)} pairs of {clean.shape[1]} tokens, "
          f"{torch.get_num_threads()} threads")
    fns = {
        "head_out": patching.get_act_patch_attn_head_out_all_pos,
        "resid_pre": patching.get_act_patch_resid_pre,
    }
    results = {}
    for name in targets.split(","):
        cells[0] = 0
        t0 = time.perf_counter()
        c0 = time.process_time()
        fns[name](model, corrupted, clean_cache, metric)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        results[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "cells": cells[0]}
        print(f"{name:<12} {wall:10.3f} s  (CPU {cpu:.3f} s, {cells[0]} cells)", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB")
    if out:
        import transformer_lens
        with open(out, "w") as f:
            json.dump({
                "tool": "TransformerLens " + getattr(transformer_lens, "__version__", "3.x"),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "pairs": len(answer),
                "tokens": clean.shape[1],
                "targets": results,
                "peak_rss_mib": round(rss),
            }, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
