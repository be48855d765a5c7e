#!/usr/bin/env python3
"""Write patchbench's GGUF fixtures: one file per GGUF architecture, converted
from the tiny Hugging Face fixtures the way llama.cpp's convert_hf_to_gguf.py
does, plus a k-quant model and a file holding a block of every tensor type.

Why: a GGUF mapping is right when the GGUF file gives the same numbers as the
Hugging Face model it was converted from. Tensor names come from gguf-py's own
TensorNameMap (the table convert_hf_to_gguf.py uses), layouts from the
converter's per-architecture code (cited below), so the fixtures are what a
user's converted file looks like, not what patchbench expects.

What it writes, under tests/fixtures/gguf/:

  <name>.gguf              the converted model (names below), every matrix in a
                           quantized or half type (rotating through the types so
                           each appears in some model), vectors in F32.
  reference.safetensors    <name>.logits [T, vocab]: transformers' forward of the
                           Hugging Face model whose weights were replaced by the
                           GGUF's *dequantised* values (gguf-py's dequantize, an
                           implementation independent of candle's) -- so the Rust
                           test can be tight although the weights are quantized.
                           blocks.<TYPE>: gguf-py's dequantisation of the matching
                           tensor in blocks.gguf.
  reference.json           per fixture: source, prompt, input_ids, tensor types,
                           max |logit - HF f32 logit| (the quantisation error).
  blocks.gguf              one [2, 256] tensor per tensor type candle reads (F32,
                           F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ..
                           Q6_K, Q8_K), random blocks whose f16/f32 scale fields are
                           set to small finite values.

Fixtures:
  llama      llama-tiny (Q/K rows permuted as LlamaModel.permute does; untied).
  llama31    llama3-tiny, whose rope_scaling is "llama3": the converter writes the
             per-frequency divisors as the `rope_freqs.weight` tensor
             (LlamaModel.generate_extra_tensors), not rope-scaling metadata.
  qwen2      qwen2-tiny (q/k/v biases; Qwen2Model does not permute Q/K; tied).
  gpt2       gpt2-tiny (Conv1D weights transposed to [out, in]; fused attn_qkv
             rows Q;K;V; `output.weight` written as a copy of the embedding, as
             GPT2Model.modify_tensors does).
  gptneox    pythia-tiny (parallel residual, rotary on a quarter of each head;
             the fused query_key_value rows reordered from [head, 3, d_head] to
             [3, head, d_head] as GPTNeoXModel.modify_tensors does).
  gptneox-seq  pythia-seq-tiny (sequential residual, rotary on half, base 1e3).
  gemma, gemma2, gemma3
             gemma-tiny, gemma2-tiny, gemma3-tiny converted as llama.cpp converts
             Gemma (norm weights + 1, SentencePiece vocabulary, F32 tensors so the
             GGUF model equals the Hugging Face one); see tools/gguf_gemma.py, which
             also says which keys are written beyond what llama.cpp's converter writes.
  kquant     a llama-shaped model too small to train (d_model 256, one layer,
             one head of 64) whose matrices are random k-quant blocks (Q2_K, Q3_K,
             Q4_K, Q5_K, Q6_K; gguf-py cannot quantize k-quants, so the blocks
             are written directly), with the SentencePiece tokenizer of
             tests/fixtures/spm-tiny (tokenizer.ggml.model = llama). Its reference is
             transformers' Llama with the dequantised weights.

Usage: /work/venv/bin/python tools/make_gguf_fixtures.py
Re-running rewrites identical files (seeded).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gguf_gemma  # noqa: E402
from make_fixtures import PROMPT, permute_qk, tokenizer_merges  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "tests" / "fixtures"
OUT = FIX / "gguf"
Q = gguf.GGMLQuantizationType

# Types a model fixture rotates through, per matrix (block 32: every row length
# of the tiny fixtures is a multiple of it).
ROTATION = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.F16, Q.BF16]
# The embedding and unembedding are most of a tiny model's bytes: the
# 4-to-5-bit types keep each file small.
BIG = ("token_embd.weight", "output.weight", "position_embd.weight")
BIG_ROTATION = [Q.Q4_0, Q.Q4_1, Q.Q5_0]


def quantize(arr: np.ndarray, qtype) -> np.ndarray:
    return gguf.quants.quantize(np.ascontiguousarray(arr, dtype=np.float32), qtype)


def dequantize(raw: np.ndarray, qtype) -> np.ndarray:
    if qtype == Q.F32:
        return raw.astype(np.float32)
    return gguf.quants.dequantize(raw, qtype).astype(np.float32)


class Converted:
    """GGUF tensors (name -> (array in GGUF layout, type)) and, for the
    reference, the HF state dict with each weight replaced by its
    quantize -> dequantize round trip."""

    def __init__(self, sd: dict[str, np.ndarray]):
        self.sd = sd
        self.tensors: dict[str, tuple[np.ndarray, object]] = {}
        self.hf_roundtrip: dict[str, np.ndarray] = {}
        self.types: dict[str, str] = {}
        self.k = 0

    def next_type(self, name: str):
        if name in BIG:
            self.big = getattr(self, "big", -1) + 1
            return BIG_ROTATION[self.big % len(BIG_ROTATION)]
        t = ROTATION[self.k % len(ROTATION)]
        self.k += 1
        return t

    def add(self, name: str, arr: np.ndarray, qtype, hf: str | None, transposed=False):
        """`arr` is the tensor in GGUF layout. Quantization works on rows (blocks
        along the last axis), and every layout change the converters make is a
        row reorder or (GPT-2's Conv1D) a transpose, so the HF-layout round trip
        is the GGUF-layout round trip reordered/transposed back."""
        data = quantize(arr, qtype) if qtype != Q.F32 else np.ascontiguousarray(arr, np.float32)
        self.tensors[name] = (data, qtype)
        self.types[name] = qtype.name
        if hf is not None:
            back = dequantize(data, qtype)
            self.hf_roundtrip[hf] = back.T if transposed else back

    def matrix(self, name, arr, hf, transposed=False, reorder=None):
        qtype = self.next_type(name)
        data = quantize(arr, qtype)
        self.tensors[name] = (data, qtype)
        self.types[name] = qtype.name
        back = dequantize(data, qtype)
        if reorder is not None:
            back = reorder(back)
        self.hf_roundtrip[hf] = back.T if transposed else back

    def vector(self, name, arr, hf):
        self.add(name, arr, Q.F32, hf)


def hf_model(name: str):
    model = AutoModelForCausalLM.from_pretrained(FIX / name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    return model, sd


def tensor_map(arch, n_blocks):
    return gguf.get_tensor_name_map(arch, n_blocks)


def gguf_name(tmap, hf: str) -> str:
    name = tmap.get_name(hf, try_suffixes=(".weight", ".bias"))
    assert name is not None, f"gguf-py has no name for {hf}"
    return name


def bpe_tokenizer(w: gguf.GGUFWriter, tok: Tokenizer, llama_style: bool) -> None:
    """The byte-level BPE tokenizer.json of the HF fixture, as llama.cpp's
    converter writes a gpt2-type vocabulary."""
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    specials = {"<unk>", "<s>", "</s>", "<|endoftext|>"}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(tokenizer_merges(tok))
    if llama_style:
        w.add_unk_token_id(tok.token_to_id("<unk>"))
        w.add_bos_token_id(tok.token_to_id("<s>"))
        w.add_eos_token_id(tok.token_to_id("</s>"))
        w.add_add_bos_token(True)
    else:
        w.add_bos_token_id(0)
        w.add_eos_token_id(0)
        w.add_add_bos_token(False)


def write(path: Path, w: gguf.GGUFWriter, conv: Converted) -> None:
    for name, (data, qtype) in conv.tensors.items():
        if qtype == Q.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ------------------------------------------------------------- architectures


def convert_llama(hf: str, arch_name: str, rope_freqs: bool):
    model, sd = hf_model(hf)
    cfg = model.config
    arch = gguf.MODEL_ARCH.QWEN2 if arch_name == "qwen2" else gguf.MODEL_ARCH.LLAMA
    tmap = tensor_map(arch, cfg.num_hidden_layers)
    conv = Converted(sd)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    for k, v in sd.items():
        if k == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        name = gguf_name(tmap, k)
        if v.ndim == 1:
            conv.vector(name, v, k)
        elif arch_name == "llama" and k.endswith(("q_proj.weight", "k_proj.weight")):
            heads = n_head if "q_proj" in k else n_kv
            # Rows permuted, quantized per row: un-permuting the round trip is
            # reordering its rows back.
            conv.matrix(name, permute_qk(v, heads, heads), k,
                        reorder=lambda b, h=heads: unpermute_qk(b, h))
        else:
            conv.matrix(name, v, k)

    w = gguf.GGUFWriter(None, arch_name)
    w.add_name(hf)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    params = cfg.rope_parameters
    w.add_rope_freq_base(float(params["rope_theta"]))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    if rope_freqs:
        assert params["rope_type"] == "llama3"
        conv.add("rope_freqs.weight", llama3_rope_factors(params, head_dim), Q.F32, None)
    tok = Tokenizer.from_file(str(FIX / hf / "tokenizer.json"))
    bpe_tokenizer(w, tok, llama_style=arch_name == "llama")
    return model, conv, w, tok


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(p: dict, dim: int) -> np.ndarray:
    """LlamaModel.generate_extra_tensors in convert_hf_to_gguf.py."""
    base = p["rope_theta"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old = p["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wl:
            out.append(1)
        elif wavelen > low_wl:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def convert_gpt2(hf: str):
    model, sd = hf_model(hf)
    cfg = model.config
    tmap = tensor_map(gguf.MODEL_ARCH.GPT2, cfg.n_layer)
    conv = Converted(sd)
    for k, v in sd.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")) or k == "lm_head.weight":
            continue
        name = gguf_name(tmap, k.removeprefix("transformer."))
        if v.ndim == 1:
            conv.vector(name, v, k)
        elif k.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            conv.matrix(name, v.T, k, transposed=True)
        else:
            conv.matrix(name, v, k)
        if name == "token_embd.weight":
            # GPT2Model.modify_tensors: the tied output is written as a copy.
            data, qtype = conv.tensors[name]
            conv.tensors["output.weight"] = (data, qtype)
            conv.types["output.weight"] = qtype.name
    w = gguf.GGUFWriter(None, "gpt2")
    w.add_name(hf)
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(4 * cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    tok = Tokenizer.from_file(str(FIX / hf / "tokenizer.json"))
    bpe_tokenizer(w, tok, llama_style=False)
    return model, conv, w, tok


def convert_neox(hf: str):
    model, sd = hf_model(hf)
    cfg = model.config
    tmap = tensor_map(gguf.MODEL_ARCH.GPTNEOX, cfg.num_hidden_layers)
    conv = Converted(sd)
    h, d = cfg.num_attention_heads, cfg.hidden_size
    dh = d // h

    def fuse(x):  # [h, 3, dh, ...] -> [3, h, dh, ...]
        return x.reshape(h, 3, dh, *x.shape[1:]).swapaxes(0, 1).reshape(x.shape)

    def unfuse(x):
        return x.reshape(3, h, dh, *x.shape[1:]).swapaxes(0, 1).reshape(x.shape)

    for k, v in sd.items():
        if k.endswith((".attention.bias", ".attention.masked_bias", "rotary_emb.inv_freq")):
            continue
        name = gguf_name(tmap, k)
        if "query_key_value" in k:
            if v.ndim == 1:
                conv.add(name, fuse(v), Q.F32, None)
                conv.hf_roundtrip[k] = v
            else:
                conv.matrix(name, fuse(v), k, reorder=unfuse)
        elif v.ndim == 1:
            conv.vector(name, v, k)
        else:
            conv.matrix(name, v, k)
    rotary = int(model.config.rope_parameters.get("partial_rotary_factor", 0.25) * dh)
    w = gguf.GGUFWriter(None, "gptneox")
    w.add_name(hf)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(d)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(rotary)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_head_count(h)
    w.add_parallel_residual(cfg.use_parallel_residual)
    w.add_layer_norm_eps(cfg.layer_norm_eps)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    tok = Tokenizer.from_file(str(FIX / hf / "tokenizer.json"))
    bpe_tokenizer(w, tok, llama_style=False)
    return model, conv, w, tok


FAMILIES = {
    "llama": lambda: convert_llama("llama-tiny", "llama", rope_freqs=False),
    "llama31": lambda: convert_llama("llama3-tiny", "llama", rope_freqs=True),
    "qwen2": lambda: convert_llama("qwen2-tiny", "qwen2", rope_freqs=False),
    "gpt2": lambda: convert_gpt2("gpt2-tiny"),
    "gptneox": lambda: convert_neox("pythia-tiny"),
    "gptneox-seq": lambda: convert_neox("pythia-seq-tiny"),
    "gemma": lambda: gguf_gemma.convert_gemma("gemma-tiny", "gemma", sys.modules[__name__]),
    "gemma2": lambda: gguf_gemma.convert_gemma("gemma2-tiny", "gemma2", sys.modules[__name__]),
    "gemma3": lambda: gguf_gemma.convert_gemma("gemma3-tiny", "gemma3", sys.modules[__name__]),
}


def build_family(name: str, refs: dict, meta: dict) -> None:
    model, conv, w, tok = FAMILIES[name]()
    path = OUT / f"{name}.gguf"
    write(path, w, conv)
    ids = tok.encode(PROMPT).ids
    with torch.no_grad():
        hf_logits = model(torch.tensor([ids]), use_cache=False).logits[0]
        sd = model.state_dict()
        for k, v in conv.hf_roundtrip.items():
            assert sd[k].shape == v.shape, (k, sd[k].shape, v.shape)
        missing = set(sd) - set(conv.hf_roundtrip)
        missing = {k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"))}
        if getattr(model.config, "tie_word_embeddings", False):
            missing.discard("lm_head.weight")
        if name == "gpt2":
            missing.discard("lm_head.weight")
        assert not missing, missing
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in conv.hf_roundtrip.items()},
                              strict=False)
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]
    qerr = float((logits - hf_logits).abs().max())
    print(f"{name}: {path.stat().st_size} bytes, T={len(ids)}, max|dequantised - f32 logits| = {qerr:.4g}")
    refs[f"{name}.logits"] = logits.contiguous()
    meta[name] = {
        "source": f"tests/fixtures/{model.name_or_path.split('/')[-1]}",
        "prompt": PROMPT,
        "input_ids": ids,
        "tensor_types": conv.types,
        "max_abs_diff_dequantised_vs_f32_logits": qerr,
    }
    if getattr(conv, "extra_keys", None):
        meta[name]["keys_beyond_llama_cpp_converter"] = conv.extra_keys


# ------------------------------------------------------- raw blocks, k-quants

# Where each block type keeps its float scale fields: (byte offset, "f16"|"f32").
# Layouts as gguf-py's quants.py (and ggml-common.h) read them.
SCALES = {
    Q.Q4_0: [(0, "f16")], Q.Q4_1: [(0, "f16"), (2, "f16")], Q.Q5_0: [(0, "f16")],
    Q.Q5_1: [(0, "f16"), (2, "f16")], Q.Q8_0: [(0, "f16")], Q.Q8_1: [(0, "f16"), (2, "f16")],
    Q.Q2_K: [(80, "f16"), (82, "f16")], Q.Q3_K: [(108, "f16")],
    Q.Q4_K: [(0, "f16"), (2, "f16")], Q.Q5_K: [(0, "f16"), (2, "f16")],
    Q.Q6_K: [(208, "f16")], Q.Q8_K: [(0, "f32")],
}
# Q8_1 and Q8_K are ggml's dot-product partner types: candle 0.11 has their
# blocks but cannot load them from a file ("not supported yet"), and no
# converter stores weights in them.
BLOCK_TYPES = [Q.F32, Q.F16, Q.BF16, *(t for t in SCALES if t not in (Q.Q8_1, Q.Q8_K))]


def random_blocks(rng: np.random.Generator, qtype, rows: int, cols: int, scale: float) -> np.ndarray:
    """Random quantized data whose scale fields are small finite numbers
    (random bytes there could be NaN or huge)."""
    if qtype in (Q.F32, Q.F16):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float16 if qtype == Q.F16 else np.float32)
    if qtype == Q.BF16:
        return quantize((rng.standard_normal((rows, cols)) * scale).astype(np.float32), Q.BF16)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols // block
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for off, kind in SCALES[qtype]:
        vals = rng.uniform(0.2, 1.0, size=n) * scale
        dt = np.float16 if kind == "f16" else np.float32
        raw[:, off:off + np.dtype(dt).itemsize] = vals.astype(dt).view(np.uint8).reshape(n, -1)
    return raw.reshape(rows, cols // block * size)


def dequantize_any(raw: np.ndarray, qtype, cols: int) -> np.ndarray:
    """gguf-py's dequantisation; Q8_1 and Q8_K (which it lacks) by their
    definition in ggml: x = d * q."""
    if qtype == Q.F16:
        return raw.astype(np.float32)
    if qtype in (Q.Q8_1, Q.Q8_K):
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        b = raw.reshape(-1, size)
        if qtype == Q.Q8_1:
            d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
            q = b[:, 4:36].view(np.int8).astype(np.float32)
        else:
            d = b[:, 0:4].copy().view(np.float32)
            q = b[:, 4:260].view(np.int8).astype(np.float32)
        return (d * q).reshape(-1, cols)
    return dequantize(raw, qtype).reshape(-1, cols)


def build_blocks(refs: dict, meta: dict) -> None:
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(None, "blocks")
    types = {}
    for qtype in BLOCK_TYPES:
        raw = random_blocks(rng, qtype, 2, 256, 0.01)
        name = f"blocks.{qtype.name}"
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_dtype=qtype)
        refs[name] = torch.from_numpy(np.ascontiguousarray(dequantize_any(raw, qtype, 256)))
        types[name] = qtype.name
    path = OUT / "blocks.gguf"
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta["blocks"] = {"tensor_types": types}
    print(f"blocks: {path.stat().st_size} bytes, {len(types)} types")


def build_kquant(refs: dict, meta: dict) -> None:
    import make_spm_fixture as spm_fixture
    import sentencepiece

    rng = np.random.default_rng(11)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(FIX / "spm-tiny" / "tokenizer.model"))
    vocab, d, n_head, n_kv, dh, d_mlp = sp.vocab_size(), 256, 2, 1, 32, 64
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=d_mlp, num_hidden_layers=1,
                      num_attention_heads=n_head, num_key_value_heads=n_kv, head_dim=dh,
                      max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=True)
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
    # (gguf name, hf name, type, rows, cols): rows/cols of the GGUF layout.
    plan = [
        ("token_embd.weight", "model.embed_tokens.weight", Q.Q2_K, vocab, d),
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", Q.Q3_K, n_head * dh, d),
        ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", Q.Q4_K, n_kv * dh, d),
        ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", Q.Q5_K, n_kv * dh, d),
        ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", Q.Q4_0, d, n_head * dh),
        ("blk.0.ffn_gate.weight", "model.layers.0.mlp.gate_proj.weight", Q.Q6_K, d_mlp, d),
        ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight", Q.Q4_K, d_mlp, d),
        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", Q.Q5_1, d, d_mlp),
    ]
    w = gguf.GGUFWriter(None, "llama")
    w.add_name("kquant-tiny")
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_block_count(1)
    w.add_feed_forward_length(d_mlp)
    w.add_rope_dimension_count(dh)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(dh)
    w.add_value_length(dh)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    spm_fixture.gguf_vocab(w)
    sd, types = {}, {}
    for name, hf, qtype, rows, cols in plan:
        raw = random_blocks(rng, qtype, rows, cols, 0.02)
        w.add_tensor(name, raw, raw_dtype=qtype)
        back = dequantize_any(raw, qtype, cols)
        if name.startswith(("blk.0.attn_q", "blk.0.attn_k")):
            back = unpermute_qk(back, rows // dh)
        sd[hf] = back
        types[name] = qtype.name
    for name, hf in [("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
                     ("blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"),
                     ("output_norm.weight", "model.norm.weight")]:
        v = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w.add_tensor(name, v)
        sd[hf] = v
        types[name] = "F32"
    path = OUT / "kquant.gguf"
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    model = LlamaForCausalLM(cfg).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                                strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    ids = [1] + sp.encode(PROMPT)
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]
    refs["kquant.logits"] = logits.contiguous()
    meta["kquant"] = {"source": "random k-quant blocks (see the script)", "prompt": PROMPT, "input_ids": ids,
                      "tensor_types": types}
    print(f"kquant: {path.stat().st_size} bytes, T={len(ids)}, logit std {float(logits.std()):.3f}")
    spm_fixture.add_transformers_ids(OUT, "kquant.gguf")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    refs: dict[str, torch.Tensor] = {}
    meta: dict = {"gguf_py_version": gguf_version(), "torch_version": torch.__version__}
    for name in FAMILIES:
        build_family(name, refs, meta)
    build_blocks(refs, meta)
    build_kquant(refs, meta)
    save_file(refs, str(OUT / "reference.safetensors"))
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


if __name__ == "__main__":
    main()
