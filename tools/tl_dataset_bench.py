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
"""

import json
import sys
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching


def main(path, threads=None):
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

    def metric(logits):
        last = logits[:, -1]
        return (last[rows, answer] - last[rows, wrong]).mean()

    print(f"TransformerLens {len(answer)} pairs of {clean.shape[1]} tokens, "
          f"{torch.get_num_threads()} threads")
    for name, fn in [
        ("head_out", patching.get_act_patch_attn_head_out_all_pos),
        ("resid_pre", patching.get_act_patch_resid_pre),
    ]:
        t = time.perf_counter()
        fn(model, corrupted, clean_cache, metric)
        print(f"{name:<12} {time.perf_counter() - t:10.3f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
