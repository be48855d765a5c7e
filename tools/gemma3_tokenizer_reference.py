#!/usr/bin/env python3
"""Reference token ids for Gemma 3's 262k-entry SentencePiece vocabulary, from
transformers' tokenizer built from the Gemma 3 270M GGUF.

Why: patchbench rebuilds the tokenizer from the GGUF's tokenizer.ggml.* metadata by
hand (src/model/tokenizer/gguf_spm.rs). A wrong id does not fail, it silently shifts
every logit, and the real vocabulary has what the tiny test vocabularies lack: 262k
pieces whose scores are not in file order, runs of spaces, newlines and tabs as
pieces of their own, multi-character emoji pieces, <start_of_turn>-style added
tokens, digits split one by one, and no dummy prefix (add_space_prefix = false).

The reference is transformers' `AutoTokenizer.from_pretrained(dir, gguf_file=...)`,
which converts the GGUF vocabulary itself (GGUFGemmaConverter) -- an implementation
independent of patchbench's.

Usage:
    /work/venv/bin/python tools/gemma3_tokenizer_reference.py "$(scripts/fetch-gemma3.sh | tail -n 1)"

Writes tests/fixtures/gemma3-270m/tokens.json (a few KB): for each awkward string,
its ids without special tokens and the pieces they spell; the ids with BOS for one
prompt; the GGUF's sha256 and library versions; and, per token type (1 normal, 3
control, 4 user-defined, 6 byte), how the scores relate to file order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import transformers
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parent.parent

AWKWARD = [
    "Hello world",
    " Hello world",
    "  leading two",
    "trailing space ",
    "multiple   spaces    inside",
    "",
    " ",
    "   ",
    "digits 1234567890 and 3.14",
    "2024-11-30T12:30:00Z",
    "Café déjà vu naïve",
    "東京へ行きました",
    "emoji 🙂 and 👍🏽 here",
    "family 👨‍👩‍👧 and flag 🇫🇷",
    "newline\nand\n\ndouble newline",
    "three\n\n\nnewlines and \r\n windows",
    "tab\tseparated\tvalues",
    "\tindented\n\t\tcode()",
    "<start_of_turn>user\nHi<end_of_turn>",
    "Ünïcödé ⅱ Ω ≈ ∞",
    "mixed 日本 English 123",
    "\u00a0non-breaking\u00a0space",
    "zero\u200bwidth",
    "Привет, мир! مرحبا بالعالم",
    "The Eiffel Tower is located in the city of",
    "The Colosseum is located in the city of",
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def vocabulary_facts(path: Path) -> dict:
    """How the file orders its pieces. The rebuilt tokenizer ranks merges by score (as
    llama.cpp and transformers do), not by file position; here the normal pieces' scores
    fall strictly with their position, while byte pieces score 0 and control and
    user-defined ones -1000, so the two orders differ only for those."""
    import gguf

    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.ggml.scores"]
    scores = [float(f.parts[i][0]) for i in f.data]
    t = r.fields["tokenizer.ggml.token_type"]
    types = [int(t.parts[i][0]) for i in t.data]
    by_type = {}
    for ty in sorted(set(types)):
        s = [x for x, k in zip(scores, types) if k == ty]
        by_type[str(ty)] = {
            "count": len(s),
            "min_score": min(s),
            "max_score": max(s),
            "scores_fall_strictly_with_position": all(b < a for a, b in zip(s, s[1:])),
        }
    return {"size": len(scores), "token_types": by_type}


def main() -> None:
    ap = argparse.ArgumentParser(description="Gemma 3 GGUF tokenizer reference ids via transformers")
    ap.add_argument("gguf", type=Path, help="path to gemma-3-270m-q4_k_m.gguf (scripts/fetch-gemma3.sh)")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "gemma3-270m" / "tokens.json")
    args = ap.parse_args()
    path: Path = args.gguf.resolve()
    if not path.is_file():
        raise SystemExit(f"no such GGUF file: {path}")
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    cases = []
    for text in AWKWARD:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        cases.append({"text": text, "ids": ids, "pieces": tok.convert_ids_to_tokens(ids)})
    with_bos = tok(AWKWARD[-2])["input_ids"]
    out = {
        "gguf_sha256": sha256(path),
        "tokenizer": "transformers AutoTokenizer.from_pretrained(gguf_file=...)",
        "transformers_version": transformers.__version__,
        "vocabulary": vocabulary_facts(path),
        "bos_prompt": {"text": AWKWARD[-2], "ids": with_bos},
        "cases": cases,
    }
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
