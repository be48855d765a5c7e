#!/usr/bin/env python3
"""Write patchbench's tiny reference models to tests/fixtures/.

Why: the Rust model code must give *the same numbers* as Hugging Face
transformers (DESIGN.md: "Weights stay raw (no folding) so logits equal the
Hugging Face model's"), and its hook points must mean what TransformerLens's
mean. We cannot download real checkpoints here, so this script builds small
random models of each family patchbench loads, runs them through transformers
(the independent implementation), and stores what came out. Rust tests load
the same files and compare.

What it writes (every directory stays well under 1.5 MB):

  tests/fixtures/<name>/            name in gpt2-tiny, llama-tiny, llama3-tiny, qwen2-tiny,
                                    pythia-tiny, pythia-seq-tiny
    config.json                     Hugging Face config (see "config.json schemas" below)
    model.safetensors               HF weight names, float32, as save_pretrained writes them
    tokenizer.json                  a byte-level BPE trained below (vocab 400)
    reference.safetensors           float32, batch dim removed, contiguous:
        logits                          [T, vocab]   every position
        blocks.{l}.hook_resid_pre       [T, d_model] input of block l
        blocks.{l}.attn.hook_z          [T, n_heads, d_head]  input of c_proj/o_proj/dense, per head
        blocks.{l}.attn.hook_pattern    [n_heads, T, T]       softmaxed (eager attention)
        blocks.{l}.hook_mlp_out         [T, d_model] output of the MLP module
    reference.json                  prompt, input_ids, tokens (vocab strings), token_texts
                                    (each id decoded alone), answer ids of " Mary"/" John",
                                    versions, and for rotary models the rotary inv_freq.

  tests/fixtures/llama-tiny-gguf/
    model.gguf                      llama-tiny's weights written with gguf-py in the layout
                                    llama.cpp's convert_hf_to_gguf.py produces for "llama":
                                    Q/K rows permuted for interleaved rotary, token_embd as
                                    Q8_0, ffn_down as Q4_1, everything else F32, gpt2-type
                                    tokenizer metadata (add_bos_token = true).
    reference.safetensors           logits [T, vocab] from transformers' own GGUF loader
                                    (it un-permutes and dequantises independently of us)
    reference.json                  prompt, input_ids from transformers' GGUF tokenizer, tokens

The models (seeded; initializer_range 0.1 so attention is far from uniform):
  gpt2-tiny    GPT-2: 2 layers, d_model 64, 4 heads, 64 positions, learned positions, tied.
  llama-tiny   Llama: 2 layers, d 64, 4 heads / 2 KV heads (GQA), d_mlp 128,
               rope_theta 1e4, rms eps 1e-5, untied unembedding, 128 positions.
  llama3-tiny  as llama-tiny, rope_theta 5e5 with "llama3" rope scaling (factor 8,
               low 1, high 4, original_max_position_embeddings 64), tied. With 64, at
               d_head 16 the scaling keeps the fastest frequency, blends the next and
               divides the other six by 8, so all three branches of the llama3 rule are
               exercised (checked below; with 16 every frequency would be changed and the
               "keep" branch never tested).
  qwen2-tiny   Qwen2: as llama-tiny plus q/k/v biases, rope_theta 1e6, tied, eps 1e-6.
  pythia-tiny  GPT-NeoX as Pythia ships it: 2 layers, d 64, 4 heads (d_head 16), d_mlp 128,
               rotary on a quarter of each head (rotary_dim 4, base 1e4), parallel
               attention + MLP, exact-erf gelu, biases everywhere, untied `embed_out`.
  pythia-seq-tiny  GPT-NeoX with use_parallel_residual False (the MLP reads resid_mid):
               2 layers, d 64, 4 heads (d_head 16), d_mlp 64, rotary on half of each head
               (rotary_dim 8), rope_theta 1e3.
Every weight is drawn here from one torch.Generator per model (not by transformers'
own init), so the numbers do not depend on transformers' init code: matrices and
embeddings N(0, 0.1), biases N(0, 0.1), LayerNorm/RMSNorm weights 1 + N(0, 0.1).
Non-zero biases and norm weights mean a test catches a missed bias or norm weight.

Tokenizers: a byte-level BPE (ByteLevel pre-tokenizer, add_prefix_space=False,
ByteLevel decoder) trained on the English paragraphs in CORPUS. Two flavours:
  gpt2 style (gpt2-tiny, qwen2-tiny, pythia-*): special token <|endoftext|> (id 0), adds no
    BOS (like GPT-2 and Qwen2).
  llama style (llama-tiny, llama3-tiny, llama-tiny-gguf): <unk>=0, <s>=1, </s>=2, and
    a TemplateProcessing post-processor that prepends <s>, so the tokenizer itself adds
    BOS like Llama's.
The corpus mentions Mary and John often, so " Mary" and " John" are single tokens
(IOI-style patching tests need one-token answers).

config.json schemas: transformers 5 writes rotary settings as "rope_parameters";
checkpoints on the hub (SmolLM2, Llama 3.x, Qwen2.5, ...) use the older top-level
"rope_theta" / "rope_scaling". The fixtures cover both: gpt2-tiny, llama-tiny and
llama3-tiny are rewritten to the hub (transformers 4) layout, qwen2-tiny keeps the
transformers-5 "rope_parameters" layout. Each written directory is re-loaded with
transformers and must reproduce the in-memory model's logits exactly; the reference
activations are taken from that re-loaded model.
GPT-NeoX spells rotary settings differently again: pythia-tiny is rewritten to what
Pythia's hub configs say ("rotary_pct", "rotary_emb_base", no "attention_bias");
pythia-seq-tiny keeps the transformers-5 "rope_parameters" (with "partial_rotary_factor").
Both store the unembedding as "embed_out.weight", the hub name, which transformers 5
writes back on save although it calls the module lm_head in memory.

Usage: python3 tools/make_fixtures.py [--out DIR] [--only NAME,...]
  (default: <repo>/tests/fixtures, every fixture; --only rebuilds just the named ones,
  e.g. --only pythia-tiny,pythia-seq-tiny; llama-tiny-gguf needs llama-tiny with it)
Re-running rewrites identical files (same seeds, same library versions, same CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import gemma_fixtures
import gguf
import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    Qwen2Config,
)

REPO = Path(__file__).resolve().parent.parent
PROMPT = "When Mary and John went to the store, John gave a drink to"
VOCAB_SIZE = 400
INIT_STD = 0.1
MAX_DIR_BYTES = 1_500_000
FIXTURES = ["gpt2-tiny", "llama-tiny", "llama3-tiny", "qwen2-tiny", "llama-tiny-gguf",
            "pythia-tiny", "pythia-seq-tiny", *gemma_fixtures.GEMMA_FIXTURES]

CORPUS = [
    "When Mary and John went to the store, John gave a drink to Mary. Then Mary "
    "gave a book to John, and John said thank you to Mary. After the store they "
    "went to the park, where Mary and John sat under a tree and talked about the "
    "week. John told Mary about his work, and Mary told John about her garden.",
    "The next morning John went to the market with his sister. She wanted to buy "
    "bread, milk and apples, but the market was closed because of the rain. They "
    "walked back home through the wet streets and made tea in the kitchen. Later "
    "Mary came to visit, and the three of them played cards until the evening.",
    "In the small town where they lived, everyone knew everyone else. The baker "
    "knew which bread you liked, and the old man at the station knew which train "
    "you would take. When a stranger came to town, people would talk about it for "
    "days. Mary said that she liked the town because it was quiet and friendly.",
    "John and Mary both worked at the library. Every day they put the books back on "
    "the shelves, helped children find stories, and answered questions about the "
    "history of the town. John liked the old maps best. Mary liked the books about "
    "the sea, the ships and the people who had sailed to the other side of the world.",
    "One day a letter came to the library. It was very old, and the paper was "
    "yellow. The letter was written to a woman named Mary, and it was signed by a "
    "man named John. Our Mary and John read it together and laughed, because the "
    "names were the same as theirs. They gave the letter to the museum in the city.",
    "The city was two hours away by train. Mary went there each month to see her "
    "mother, and sometimes John went with her. They would walk along the river, "
    "drink coffee in a small shop near the bridge, and go to the museum to see the "
    "paintings. When they came back, the town always felt smaller and more quiet.",
    "In the winter the snow was deep, and the children made a large snowman in "
    "front of the school. The teacher gave each child a hot drink after they came "
    "inside. John brought a box of old games to the library, and Mary read stories "
    "to the children by the window while the snow kept falling on the roofs.",
    "Years later, people in the town still talked about the winter when the river "
    "froze and the whole town went skating. Mary and John skated to the bridge and "
    "back, and John fell twice. Mary laughed, gave him her hand, and said that next "
    "time she would teach him. He said that he would hold her to that promise.",
]


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(style: str) -> Tokenizer:
    """A byte-level BPE with exactly VOCAB_SIZE entries; style is "gpt2" or "llama"."""
    specials = ["<|endoftext|>"] if style == "gpt2" else ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if style == "gpt2":
        # What GPT-2's own tokenizer.json has: adds nothing, keeps offsets untrimmed.
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", bos)]
        )
    for i, s in enumerate(specials):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def tokenizer_merges(tok: Tokenizer) -> list[str]:
    """The BPE merges as "a b" strings, in rank order."""
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


# --------------------------------------------------------------------------- models


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter from a seeded generator (see the module docstring)."""
    norm_weights = set()
    for mod in model.modules():
        if isinstance(mod, torch.nn.LayerNorm) or "RMSNorm" in type(mod).__name__:
            norm_weights.add(id(mod.weight))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in model.named_parameters():  # tied parameters appear once
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * INIT_STD
            p.copy_(1.0 + noise if id(p) in norm_weights else noise)


def layers_of(model):
    if model.config.model_type == "gpt2":
        return model.transformer.h
    if model.config.model_type == "gpt_neox":
        return model.gpt_neox.layers
    return model.model.layers


def out_proj_of(model, layer):
    """The attention output projection, whose input is hook_z."""
    if model.config.model_type == "gpt2":
        return layer.attn.c_proj
    if model.config.model_type == "gpt_neox":
        return layer.attention.dense
    return layer.self_attn.o_proj


def dims(cfg) -> dict:
    if cfg.model_type == "gpt2":
        return dict(n_layers=cfg.n_layer, d_model=cfg.n_embd, n_heads=cfg.n_head, d_head=cfg.n_embd // cfg.n_head)
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return dict(n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, n_heads=cfg.num_attention_heads, d_head=d_head)


def run_with_hooks(model, input_ids: list[int]) -> tuple[dict[str, torch.Tensor], object]:
    """One forward pass; returns the TransformerLens-named activations (batch dim removed)."""
    d = dims(model.config)
    T = len(input_ids)
    store: dict[str, torch.Tensor] = {}
    handles = []

    def first_input(args, kwargs, key):
        return args[0] if args else kwargs[key]

    for l, layer in enumerate(layers_of(model)):
        out_proj = out_proj_of(model, layer)

        def pre_block(_m, args, kwargs, l=l):
            store[f"blocks.{l}.hook_resid_pre"] = first_input(args, kwargs, "hidden_states")[0].detach().clone()

        def pre_out_proj(_m, args, kwargs, l=l):
            z = first_input(args, kwargs, "input")[0].detach().clone()
            store[f"blocks.{l}.attn.hook_z"] = z.reshape(T, d["n_heads"], d["d_head"])

        def post_mlp(_m, _args, out, l=l):
            out = out[0] if isinstance(out, tuple) else out
            store[f"blocks.{l}.hook_mlp_out"] = out[0].detach().clone()

        handles.append(layer.register_forward_pre_hook(pre_block, with_kwargs=True))
        handles.append(out_proj.register_forward_pre_hook(pre_out_proj, with_kwargs=True))
        handles.append(layer.mlp.register_forward_hook(post_mlp))
    if gemma_fixtures.is_gemma(model):
        # Registered after post_mlp: Gemma 2/3's hook_mlp_out (after the
        # post-feedforward norm) overwrites the MLP module's output.
        handles += gemma_fixtures.register_hooks(model, store, T, d)
    try:
        with torch.no_grad():
            out = model(
                torch.tensor([input_ids]), output_attentions=True, output_hidden_states=True, use_cache=False
            )
    finally:
        for h in handles:
            h.remove()
    assert len(out.attentions) == d["n_layers"]
    for l, a in enumerate(out.attentions):
        store[f"blocks.{l}.attn.hook_pattern"] = a[0].detach().clone()
    store["logits"] = out.logits[0].detach().clone()
    return store, out


def check_activations(model, store, out, T: int) -> None:
    """Cross-check the hooks against each other, so a wrong hook cannot slip through."""
    d = dims(model.config)
    for l, layer in enumerate(layers_of(model)):
        rp = store[f"blocks.{l}.hook_resid_pre"]
        assert rp.shape == (T, d["d_model"])
        assert torch.equal(rp, out.hidden_states[l][0]), f"resid_pre {l} != hidden_states[{l}]"
        z = store[f"blocks.{l}.attn.hook_z"]
        assert z.shape == (T, d["n_heads"], d["d_head"])
        pat = store[f"blocks.{l}.attn.hook_pattern"]
        assert pat.shape == (d["n_heads"], T, T)
        assert torch.allclose(pat.sum(-1), torch.ones(d["n_heads"], T), atol=1e-5)
        assert float(pat.triu(1).abs().max()) == 0.0, "pattern not causal"
        # not uniform: the max row entry differs clearly from 1/(q+1)
        uniform = 1.0 / torch.arange(1, T + 1, dtype=torch.float32)
        assert float((pat.max(-1).values - uniform).abs().max()) > 0.1, "attention is nearly uniform"
        mlp_out = store[f"blocks.{l}.hook_mlp_out"]
        assert mlp_out.shape == (T, d["d_model"])
        # resid_post = resid_pre + attn_out + mlp_out, with attn_out = out_proj(z)
        with torch.no_grad():
            out_proj = out_proj_of(model, layer)
            attn_out = out_proj(z.reshape(1, T, -1))[0]
        nxt = out.hidden_states[l + 1][0] if l + 1 < d["n_layers"] else None
        if nxt is not None and f"blocks.{l}.hook_attn_out" in store:
            # Gemma: attn_out is o_proj(z) through the post-attention norm.
            err = float((rp + store[f"blocks.{l}.hook_attn_out"] + mlp_out - nxt).abs().max())
            assert err < 1e-4, f"layer {l}: resid_pre + attn_out + mlp_out != next resid_pre ({err})"
        elif nxt is not None:
            err = float((rp + attn_out + mlp_out - nxt).abs().max())
            assert err < 1e-4, f"layer {l}: resid_pre + attn_out + mlp_out != next resid_pre ({err})"


def hub_style_config(path: Path, rope_theta: float | None, rope_scaling: dict | None,
                     hub_fields: dict | None = None, drop: tuple[str, ...] = ()) -> None:
    """Rewrite config.json the way hub checkpoints spell rotary settings (transformers 4).
    hub_fields are family-specific top-level fields to set, drop fields to remove."""
    cfg = json.loads(path.read_text())
    cfg.pop("rope_parameters", None)
    for k in drop:
        cfg.pop(k, None)
    if rope_theta is not None:
        cfg["rope_theta"] = rope_theta
    if rope_scaling is not None:
        cfg["rope_scaling"] = rope_scaling
    cfg.update(hub_fields or {})
    cfg["torch_dtype"] = cfg.pop("dtype", "float32")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def single_token_ids(tok: Tokenizer, words: list[str]) -> dict:
    res = {}
    for w in words:
        ids = tok.encode(w, add_special_tokens=False).ids
        res[w] = ids[0] if len(ids) == 1 else None
    return res


def write_reference(outdir: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in sorted(tensors.items())},
              str(outdir / "reference.safetensors"))
    (outdir / "reference.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def inv_freq_of(model) -> list[float] | None:
    rot = getattr(getattr(model, model.base_model_prefix, None), "rotary_emb", None)
    if rot is not None and not hasattr(rot, "inv_freq"):
        # Gemma 3: one table per layer type ({layer_type}_inv_freq).
        return {k: [float(x) for x in rot.get_buffer(f"{k}_inv_freq")]
                for k in ("full_attention", "sliding_attention")}
    return None if rot is None else [float(x) for x in rot.inv_freq]


def build_fixture(name: str, config, tok: Tokenizer, seed: int, out_root: Path,
                  config_style: str, rope_theta=None, rope_scaling=None,
                  hub_fields=None, hub_drop=()):
    """Build, save, re-load and run one model. Returns (in-memory model, reference tensors)."""
    outdir = out_root / name
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    randomize(model, seed)
    if gemma_fixtures.is_gemma(model):
        gemma_fixtures.randomize_gemma_norms(model, seed, INIT_STD)
    model.eval()
    if config.tie_word_embeddings:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(Path(tmp) / "config.json", outdir / "config.json")
        shutil.copy(Path(tmp) / "model.safetensors", outdir / "model.safetensors")
    if config_style == "hub":
        hub_style_config(outdir / "config.json", rope_theta, rope_scaling, hub_fields, hub_drop)
    elif config_style == "gemma_hub":
        gemma_fixtures.hub_style(name, outdir / "config.json")
    tok.save(str(outdir / "tokenizer.json"))

    weights = load_file(str(outdir / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())

    enc = Tokenizer.from_file(str(outdir / "tokenizer.json")).encode(PROMPT)
    ids = enc.ids
    T = len(ids)
    assert T <= 64, T

    # The reference comes from the model re-loaded from disk: proves the files are complete.
    reloaded = AutoModelForCausalLM.from_pretrained(outdir, attn_implementation="eager", dtype=torch.float32)
    reloaded.eval()
    store, out = run_with_hooks(reloaded, ids)
    check_activations(reloaded, store, out, T)
    if gemma_fixtures.is_gemma(reloaded):
        gemma_fixtures.check(reloaded, store, out, ids)
        gemma_fixtures.softcap_matters(reloaded, ids, store["logits"])
    with torch.no_grad():
        mem_logits = model(torch.tensor([ids]), use_cache=False).logits[0]
    assert torch.equal(mem_logits, store["logits"]), (
        f"{name}: re-loaded model differs from in-memory model "
        f"(max {float((mem_logits - store['logits']).abs().max())})"
    )
    inv_mem, inv_re = inv_freq_of(model), inv_freq_of(reloaded)
    assert inv_mem == inv_re, f"{name}: rotary inv_freq changed on re-load: {inv_mem} vs {inv_re}"

    # transformers' own tokenizer from the same tokenizer.json must agree.
    hf_tok = AutoTokenizer.from_pretrained(outdir)
    assert hf_tok(PROMPT)["input_ids"] == ids, (hf_tok(PROMPT)["input_ids"], ids)

    d = dims(reloaded.config)
    meta = {
        "prompt": PROMPT,
        "input_ids": ids,
        "tokens": enc.tokens,
        "token_texts": [tok.decode([i], skip_special_tokens=False) for i in ids],
        "single_token_ids": single_token_ids(tok, [" Mary", " John"]),
        "n_layers": d["n_layers"],
        "n_heads": d["n_heads"],
        "d_head": d["d_head"],
        "d_model": d["d_model"],
        "vocab_size": tok.get_vocab_size(),
        "config_style": (f"hub (transformers 4 layout: {' / '.join(hub_fields or ['rope_theta', 'rope_scaling'])})"
                         if config_style == "hub" else
                         "hub (transformers 4 layout)" if config_style == "gemma_hub"
                         else "transformers 5 layout (rope_parameters)"),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    if inv_re is not None:
        meta["rope_inv_freq"] = inv_re
    if gemma_fixtures.is_gemma(reloaded):
        gemma_fixtures.tl_cross_check(outdir, ids, store)
        meta["transformer_lens_version"] = _version("transformer_lens")
    write_reference(outdir, store, meta)
    print(f"{name}: T={T} ids={ids}")
    return model, store


def check_llama3_scaling(model, rope_theta: float, d_head: int, scaling: dict) -> None:
    """The "llama3" rope type leaves short wavelengths alone, divides long ones by `factor`
    and blends in between; the fixture must exercise all three branches."""
    plain = [1.0 / rope_theta ** (i / d_head) for i in range(0, d_head, 2)]
    scaled = inv_freq_of(model)
    orig = scaling["original_max_position_embeddings"]
    high_wl, low_wl = orig / scaling["high_freq_factor"], orig / scaling["low_freq_factor"]
    regimes = []
    for a, b in zip(plain, scaled):
        wl = 2 * math.pi / a
        if wl < high_wl:
            regimes.append("kept")
            assert math.isclose(a, b, rel_tol=1e-6), (a, b)
        elif wl > low_wl:
            regimes.append("divided")
            assert math.isclose(a / scaling["factor"], b, rel_tol=1e-6), (a, b)
        else:
            regimes.append("blended")
            assert a / scaling["factor"] < b < a, (a, b)
    print(f"llama3-tiny: rope scaling per frequency: {regimes}")
    assert {"kept", "divided", "blended"} <= set(regimes), regimes


# --------------------------------------------------------------------------- GGUF


def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half layout ->
    the interleaved (GPT-J style) pairs llama.cpp's rope expects."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path: Path, model, tok: Tokenizer) -> None:
    cfg = model.config
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    Q = gguf.GGMLQuantizationType

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("llama-tiny")
    w.add_vocab_size(cfg.vocab_size)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    assert None not in tokens
    specials = {"<unk>", "<s>", "</s>"}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")  # llama.cpp's name for the GPT-2 split regex, which ByteLevel uses
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(tokenizer_merges(tok))
    w.add_unk_token_id(tok.token_to_id("<unk>"))
    w.add_bos_token_id(tok.token_to_id("<s>"))
    w.add_eos_token_id(tok.token_to_id("</s>"))
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)

    def f32(name, arr):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

    def quant(name, arr, qtype):
        w.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(arr, dtype=np.float32), qtype), raw_dtype=qtype)

    quant("token_embd.weight", sd["model.embed_tokens.weight"], Q.Q8_0)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        f32(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        f32(f"blk.{i}.attn_q.weight", permute_qk(sd[p + "self_attn.q_proj.weight"], n_head, n_head))
        f32(f"blk.{i}.attn_k.weight", permute_qk(sd[p + "self_attn.k_proj.weight"], n_head, n_kv))
        f32(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        f32(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        f32(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        f32(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        f32(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        quant(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"], Q.Q4_1)
    f32("output_norm.weight", sd["model.norm.weight"])
    f32("output.weight", sd["lm_head.weight"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build_gguf_fixture(out_root: Path, llama_model, llama_store, tok: Tokenizer) -> None:
    outdir = out_root / "llama-tiny-gguf"
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    write_llama_gguf(outdir / "model.gguf", llama_model, tok)

    # Independent implementation: transformers' GGUF loader (un-permutes, dequantises).
    gmodel = AutoModelForCausalLM.from_pretrained(
        outdir, gguf_file="model.gguf", dtype=torch.float32, attn_implementation="eager"
    )
    gmodel.eval()
    gtok = AutoTokenizer.from_pretrained(outdir, gguf_file="model.gguf")
    ids = gtok(PROMPT)["input_ids"]
    assert ids == Tokenizer.from_file(str(out_root / "llama-tiny" / "tokenizer.json")).encode(PROMPT).ids, (
        "GGUF tokenizer disagrees with llama-tiny's tokenizer.json"
    )

    # The un-permuted F32 tensors must come back bit-exact; the quantised ones close.
    orig = llama_model.state_dict()
    got = gmodel.state_dict()
    for k, v in orig.items():
        if k not in got:
            raise AssertionError(f"GGUF model lacks {k}")
        err = float((got[k] - v).abs().max())
        if "embed_tokens" in k or "down_proj" in k:
            assert 0 < err < 0.05, (k, err)
        else:
            assert err == 0.0, (k, err)
    assert not gmodel.config.tie_word_embeddings

    with torch.no_grad():
        logits = gmodel(torch.tensor([ids]), use_cache=False).logits[0]
    ref = llama_store["logits"]
    diff = float((logits - ref).abs().max())
    corr = float(np.corrcoef(logits.flatten().numpy(), ref.flatten().numpy())[0, 1])
    agree = float((logits.argmax(-1) == ref.argmax(-1)).float().mean())
    print(f"llama-tiny-gguf: T={len(ids)} vs f32 llama-tiny: max|dlogit|={diff:.4f} corr={corr:.5f} "
          f"argmax agreement={agree:.2f} (logit std {float(ref.std()):.3f})")
    assert torch.isfinite(logits).all()
    assert diff > 0, "quantisation had no effect?"
    assert corr > 0.99, corr

    write_reference(outdir, {"logits": logits}, {
        "prompt": PROMPT,
        "input_ids": ids,
        "tokens": gtok.convert_ids_to_tokens(ids),
        "gguf_tensor_types": {"token_embd.weight": "Q8_0", "blk.*.ffn_down.weight": "Q4_1", "others": "F32"},
        "source": "llama-tiny weights; logits from transformers' GGUF loader",
        "max_abs_diff_vs_llama_tiny_f32": diff,
        "transformers_version": transformers.__version__,
        "gguf_py_version": _gguf_version(),
        "torch_version": torch.__version__,
    })


def _gguf_version() -> str:
    return _version("gguf")


def _version(package: str) -> str:
    try:
        from importlib.metadata import version
        return version(package)
    except Exception:  # pragma: no cover
        return "unknown"


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                    help="comma-separated fixture names to rebuild (default: all)")
    args = ap.parse_args()
    out_root: Path = args.out
    out_root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # same reduction order on every run
    unknown = (args.only or set()) - set(FIXTURES)
    assert not unknown, f"unknown fixtures {sorted(unknown)}; known: {FIXTURES}"
    if args.only and "llama-tiny-gguf" in args.only:
        assert "llama-tiny" in args.only, "llama-tiny-gguf is written from llama-tiny: rebuild both"

    def want(name: str) -> bool:
        return args.only is None or name in args.only

    tok_gpt2 = train_tokenizer("gpt2")
    tok_llama = train_tokenizer("llama")
    eot = tok_gpt2.token_to_id("<|endoftext|>")

    if want("gpt2-tiny"):
        gpt2_cfg = GPT2Config(
            vocab_size=VOCAB_SIZE, n_positions=64, n_embd=64, n_layer=2, n_head=4,
            initializer_range=INIT_STD, bos_token_id=eot, eos_token_id=eot,
        )
        build_fixture("gpt2-tiny", gpt2_cfg, tok_gpt2, seed=1001, out_root=out_root, config_style="hub")

    llama_common = dict(
        vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
        initializer_range=INIT_STD, bos_token_id=1, eos_token_id=2, hidden_act="silu",
    )
    if want("llama-tiny"):
        llama_cfg = LlamaConfig(**llama_common, rope_theta=10000.0, tie_word_embeddings=False)
        llama_model, llama_store = build_fixture(
            "llama-tiny", llama_cfg, tok_llama, seed=1002, out_root=out_root, config_style="hub",
            rope_theta=10000.0
        )

    if want("llama3-tiny"):
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 64}
        llama3_cfg = LlamaConfig(**llama_common, rope_theta=500000.0, rope_scaling=dict(scaling),
                                 tie_word_embeddings=True)
        llama3_model, _ = build_fixture(
            "llama3-tiny", llama3_cfg, tok_llama, seed=1003, out_root=out_root, config_style="hub",
            rope_theta=500000.0, rope_scaling=dict(scaling),
        )
        check_llama3_scaling(llama3_model, 500000.0, 16, scaling)

    if want("qwen2-tiny"):
        qwen2_cfg = Qwen2Config(
            vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6,
            rope_theta=1000000.0, tie_word_embeddings=True, initializer_range=INIT_STD,
            bos_token_id=eot, eos_token_id=eot, use_sliding_window=False,
        )
        qwen2_model, _ = build_fixture("qwen2-tiny", qwen2_cfg, tok_gpt2, seed=1004, out_root=out_root,
                                       config_style="transformers5")
        qb = [n for n, p in qwen2_model.named_parameters() if n.endswith("bias")]
        assert sorted({n.split(".")[-2] for n in qb}) == ["k_proj", "q_proj", "v_proj"], qb

    if want("llama-tiny-gguf"):
        build_gguf_fixture(out_root, llama_model, llama_store, tok_llama)

    neox_common = dict(
        vocab_size=VOCAB_SIZE, num_hidden_layers=2, max_position_embeddings=64, layer_norm_eps=1e-5,
        hidden_act="gelu", initializer_range=INIT_STD, bos_token_id=eot, eos_token_id=eot,
        tie_word_embeddings=False,
    )
    if want("pythia-tiny"):
        pythia_cfg = GPTNeoXConfig(
            **neox_common, hidden_size=64, num_attention_heads=4, intermediate_size=128,
            use_parallel_residual=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                         "partial_rotary_factor": 0.25},
        )
        pythia_model, _ = build_fixture(
            "pythia-tiny", pythia_cfg, tok_gpt2, seed=1005, out_root=out_root, config_style="hub",
            hub_fields={"rotary_pct": 0.25, "rotary_emb_base": 10000}, hub_drop=("attention_bias",),
        )
        check_neox(pythia_model, rotary_dim=4, parallel=True)

    if want("pythia-seq-tiny"):
        seq_cfg = GPTNeoXConfig(
            **neox_common, hidden_size=64, num_attention_heads=4, intermediate_size=64,
            use_parallel_residual=False, rope_parameters={"rope_type": "default", "rope_theta": 1000.0,
                                                          "partial_rotary_factor": 0.5},
        )
        seq_model, _ = build_fixture("pythia-seq-tiny", seq_cfg, tok_gpt2, seed=1006, out_root=out_root,
                                     config_style="transformers5")
        check_neox(seq_model, rotary_dim=8, parallel=False)

    gemma_wanted = [n for n in gemma_fixtures.GEMMA_FIXTURES if want(n)]
    if gemma_wanted:
        tok_gemma = gemma_fixtures.gemma_tokenizer(CORPUS, VOCAB_SIZE)
        gemma_cfgs = gemma_fixtures.configs(VOCAB_SIZE)
        seeds = {"gemma-tiny": 1010, "gemma2-tiny": 1011, "gemma3-tiny": 1012}
        for name in gemma_wanted:
            seed = seeds[name]
            style = "transformers5" if name == "gemma2-tiny" else "gemma_hub"
            build_fixture(name, gemma_cfgs[name], tok_gemma, seed=seed, out_root=out_root, config_style=style)

    for d in sorted(p for p in out_root.iterdir() if p.is_dir()):
        if d.name not in FIXTURES or not want(d.name):
            continue
        size = sum(f.stat().st_size for f in d.iterdir())
        print(f"{d.name}: {size} bytes")
        assert size < MAX_DIR_BYTES, f"{d} is {size} bytes"


def check_neox(model, rotary_dim: int, parallel: bool) -> None:
    """The GPT-NeoX fixtures must exercise what they claim: partial rotary, the
    residual layout, biases on every projection, an untied unembedding."""
    attn = model.gpt_neox.layers[0].attention
    assert attn.rotary_ndims == rotary_dim, (attn.rotary_ndims, rotary_dim)
    assert rotary_dim < attn.head_size
    assert all(layer.use_parallel_residual == parallel for layer in model.gpt_neox.layers)
    assert attn.query_key_value.bias is not None and attn.dense.bias is not None
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight


if __name__ == "__main__":
    main()
