#!/usr/bin/env python3
"""Train a tiny SentencePiece model and record how it tokenizes awkward text.

Why: patchbench rebuilds SentencePiece tokenizers from GGUF metadata
(`tokenizer.ggml.model = llama`) by hand (src/model/tokenizer/gguf_spm.rs).
The reference is SentencePiece itself and transformers' tokenizer for the
same vocabulary; a wrong id does not fail, it silently shifts every logit.

The model is trained like Llama's (BPE, byte fallback, digits split, identity
normalisation, whitespace kept, dummy prefix) with two user-defined symbols,
on a small corpus that mixes English, accented Latin and a little CJK, so the
awkward strings below exercise merges, whitespace runs, unknown characters
(byte fallback: emoji, most CJK) and user-defined tokens.

Writes tests/fixtures/spm-tiny/:
  tokenizer.model   the SentencePiece model (the kquant GGUF fixture carries its
                    vocabulary as tokenizer.ggml.* metadata, see
                    tools/make_gguf_fixtures.py)
  expected.json     for each awkward string: ids from SentencePiece
                    (`encode`, no BOS) and from transformers' tokenizer built from
                    the GGUF file (`AutoTokenizer.from_pretrained(dir, gguf_file=)`,
                    BOS dropped), and whether they agree.

Usage: /work/venv/bin/python tools/make_spm_fixture.py  (then make_gguf_fixtures.py)
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import sentencepiece as spm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import CORPUS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "spm-tiny"
VOCAB = 480
USER_DEFINED = ["<tool>", "\n\n"]

EXTRA = [
    "Café déjà vu: naïve façade, the über-cool résumé.",
    "東京と大阪へ行きました。東京はとても大きいです。",
    "Numbers like 1234567 and 3.14159 and 2024-11-30 are split into digits.",
    "Tabs\tand  double  spaces   and\nnewlines\n\nmatter here.",
]

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
    "Café déjà vu naïve",
    "東京へ行きました",
    "emoji 🙂 and 👍🏽 here",
    "newline\nand\n\ndouble newline",
    "tab\tseparated\tvalues",
    "<tool> call <tool>",
    "Ünïcödé ⅱ Ω ≈ ∞",
    "mixed 日本 English 123",
    "\u00a0non-breaking\u00a0space",
    "zero\u200bwidth",
    "When Mary and John went to the store, John gave a drink to",
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 3 + EXTRA * 3),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        character_coverage=0.98,
        user_defined_symbols=USER_DEFINED,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    path = OUT / "tokenizer.model"
    path.write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(path))
    cases = [{"text": t, "sentencepiece": sp.encode(t)} for t in AWKWARD]
    (OUT / "expected.json").write_text(json.dumps({"cases": cases}, indent=1, ensure_ascii=False) + "\n")
    print(f"spm-tiny: vocab {sp.vocab_size()}, {path.stat().st_size} bytes")


def add_transformers_ids(gguf_dir: Path, gguf_file: str) -> None:
    """Called by make_gguf_fixtures.py once the GGUF exists."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    data = json.loads((OUT / "expected.json").read_text())
    for case in data["cases"]:
        ids = tok(case["text"], add_special_tokens=False)["input_ids"]
        case["transformers_gguf"] = ids
        case["agree"] = ids == case["sentencepiece"]
    data["transformers_bos_prompt"] = tok(AWKWARD[-1])["input_ids"]
    (OUT / "expected.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    bad = [c["text"] for c in data["cases"] if not c["agree"]]
    print(f"spm-tiny: transformers' GGUF tokenizer disagrees with SentencePiece on {bad!r}")


def gguf_vocab(writer) -> None:
    """The tokenizer.ggml.* keys llama.cpp's converter writes for this model
    (`_create_vocab_sentencepiece`: pieces, scores, token types)."""
    import gguf

    sp = spm.SentencePieceProcessor(model_file=str(OUT / "tokenizer.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        elif sp.id_to_piece(i) in USER_DEFINED:
            t = gguf.TokenType.USER_DEFINED
        else:
            t = gguf.TokenType.NORMAL
        types.append(t)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)


if __name__ == "__main__":
    main()
