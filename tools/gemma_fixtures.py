"""Gemma fixtures for tools/make_fixtures.py: tiny random Gemma 1, 2 and 3 (text).

Imported by make_fixtures.py (run that, not this). What is Gemma-specific here:

Tokenizer: a SentencePiece BPE (byte fallback, digits split, no dummy prefix) trained on
make_fixtures.CORPUS with Gemma's special pieces <pad>=0 <eos>=1 <bos>=2 <unk>=3, then
converted by transformers' own GemmaTokenizer conversion into the tokenizer.json layout
Gemma checkpoints ship (Replace " " -> "▁" normalizer, Split pre-tokenizer, byte-fallback
BPE, a TemplateProcessing post-processor that prepends <bos>). So the fixtures exercise
patchbench on a real Gemma-style tokenizer.json, and BOS comes from the tokenizer as it
does for Gemma.

The models (seeded; every weight N(0, 0.1) like the other fixtures, except that Gemma's
RMSNorm weights are drawn N(0, 0.1) around 0 because Gemma scales by 1 + w: a loader that
forgot the offset would scale by ~0 and fail loudly):
  gemma-tiny    Gemma 1: 2 layers, d_model 48 (sqrt 6.93 embedding scale), 4 heads / 2 KV
                heads, head_dim 16 (4 * 16 != 48), d_mlp 64, tied; hub config layout with the
                legacy hidden_act "gelu" (read as tanh GELU, as transformers does).
  gemma2-tiny   Gemma 2: as gemma-tiny with 3 layers (local, global, local), sliding window
                4 (the prompt has 21 tokens), query_pre_attn_scalar 24 (not head_dim),
                attention soft-cap 1.0 and final soft-cap 0.5 (small enough that tanh bends the
                tiny model's scores and logits: checked below), transformers-5 layout
                (layer_types written out).
  gemma3-tiny   Gemma 3 text: 3 layers from sliding_window_pattern 3 (local, local, global),
                window 4, q/k norms, rope_theta 1e6 with linear scaling factor 8 on global
                layers and rope_local_base_freq 1e4 on local ones, query_pre_attn_scalar 24,
                final soft-cap 1.0 (transformers' Gemma 3 never soft-caps attention scores, so
                none is set), untied unembedding; hub (transformers 4) config layout.

Extra reference activations (beyond resid_pre, z, pattern, mlp_out of every fixture):
  blocks.{l}.attn.hook_q / hook_k / hook_v   [T, heads, d_head]  the projections, before q/k
                                             norm and rotary (TransformerLens's hook_q/k/v)
  blocks.{l}.hook_attn_out                   [T, d_model] after the post-attention norm
                                             (Gemma 2/3), what the residual stream adds
  blocks.{l}.hook_resid_mid                  [T, d_model] resid_pre + attn_out
  blocks.{l}.hook_mlp_out                    [T, d_model] after the post-feedforward norm
  blocks.{l}.mlp.hook_pre / hook_post        [T, d_mlp]  gate projection / down_proj input
  hook_embed                                 [T, d_model] the scaled token embedding
  blocks.{l}.attn.hook_attn_scores           [heads, T, T] from TransformerLens (below), masked
                                             entries -inf (TransformerLens writes finfo.min)
Every stored activation is also taken from TransformerLens's TransformerBridge booted on the
written directory and must equal the transformers one exactly (tl_cross_check): that is
where hook_attn_out / hook_mlp_out after the post-norms and hook_q/k before the q/k norms
come from, not from a reading of the code.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import sentencepiece as spm
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, Gemma2Config, Gemma3TextConfig, GemmaConfig

GEMMA_FIXTURES = ["gemma-tiny", "gemma2-tiny", "gemma3-tiny"]
SLIDING_WINDOW = 4


def is_gemma(model) -> bool:
    return model.config.model_type in ("gemma", "gemma2", "gemma3_text")


def gemma_spm(corpus: list[str], vocab_size: int) -> bytes:
    """The SentencePiece model (serialized proto) behind the Gemma-style tokenizer:
    deterministic (one thread), so tools/make_gguf_fixtures.py can retrain it and write
    its pieces, scores and types into the Gemma GGUF fixtures as llama.cpp's converter
    writes a tokenizer.model."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 3), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, add_dummy_prefix=False, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=["<mask>", "<start_of_turn>", "<end_of_turn>"],
        num_threads=1, minloglevel=2,
    )
    return buf.getvalue()


def gemma_tokenizer(corpus: list[str], vocab_size: int) -> Tokenizer:
    """A Gemma-style tokenizer.json, converted by transformers from a SentencePiece model."""
    model = gemma_spm(corpus, vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.model").write_bytes(model)
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False}))
        hf = AutoTokenizer.from_pretrained(tmp)
        tok = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    for i, s in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    enc = tok.encode("Mary")
    assert enc.ids[0] == 2, "the Gemma tokenizer must prepend <bos>"
    return tok


def randomize_gemma_norms(model, seed: int, std: float) -> None:
    """Gemma's norms scale by 1 + w: draw w around 0 (make_fixtures drew it around 1)."""
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for mod in model.modules():
            if "RMSNorm" in type(mod).__name__:
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * std)


def configs(vocab_size: int) -> dict:
    common = dict(
        vocab_size=vocab_size, hidden_size=48, intermediate_size=64, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-6,
        initializer_range=0.1, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    return {
        "gemma-tiny": GemmaConfig(**common, num_hidden_layers=2, hidden_act="gelu_pytorch_tanh",
                                  rope_theta=10000.0, tie_word_embeddings=True),
        "gemma2-tiny": Gemma2Config(
            **common, num_hidden_layers=3, query_pre_attn_scalar=24, sliding_window=SLIDING_WINDOW,
            attn_logit_softcapping=1.0, final_logit_softcapping=0.5, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        "gemma3-tiny": Gemma3TextConfig(
            **common, num_hidden_layers=3, query_pre_attn_scalar=24, sliding_window=SLIDING_WINDOW,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            attn_logit_softcapping=None, final_logit_softcapping=1.0, tie_word_embeddings=False,
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
            },
        ),
    }


def hub_style(name: str, path: Path) -> None:
    """Rewrite config.json the way the hub's Gemma checkpoints spell it (transformers 4)."""
    cfg = json.loads(path.read_text())
    if name == "gemma-tiny":
        cfg.pop("rope_parameters", None)
        cfg["rope_theta"] = 10000.0
        cfg["hidden_act"] = "gelu"  # the legacy value Gemma 1 configs carry
        cfg["hidden_activation"] = None
    elif name == "gemma3-tiny":
        rp = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rp["full_attention"]["rope_theta"]
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": rp["full_attention"]["factor"]}
        cfg["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
        cfg.pop("layer_types")
        cfg.pop("_sliding_window_pattern", None)
        cfg["sliding_window_pattern"] = 3
    cfg["torch_dtype"] = cfg.pop("dtype", "float32")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def register_hooks(model, store: dict, T: int, d: dict) -> list:
    """Hooks on the Gemma modules that carry TransformerLens's meanings."""
    handles = []
    gen1 = model.config.model_type == "gemma"

    def keep(key, shape=None):
        def hook(_m, _args, out):
            out = out[0] if isinstance(out, tuple) else out
            t = out[0].detach().clone()
            store[key] = t.reshape(T, *shape) if shape else t
        return hook

    def keep_input(key):
        def hook(_m, args):
            store[key] = args[0][0].detach().clone()
        return hook

    n_kv = model.config.num_key_value_heads
    for l, layer in enumerate(model.model.layers):
        b, a = f"blocks.{l}", layer.self_attn
        handles.append(a.q_proj.register_forward_hook(keep(f"{b}.attn.hook_q", (d["n_heads"], d["d_head"]))))
        handles.append(a.k_proj.register_forward_hook(keep(f"{b}.attn.hook_k", (n_kv, d["d_head"]))))
        handles.append(a.v_proj.register_forward_hook(keep(f"{b}.attn.hook_v", (n_kv, d["d_head"]))))
        handles.append(layer.mlp.gate_proj.register_forward_hook(keep(f"{b}.mlp.hook_pre")))
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(keep_input(f"{b}.mlp.hook_post")))
        if gen1:
            handles.append(a.o_proj.register_forward_hook(keep(f"{b}.hook_attn_out")))
            handles.append(layer.post_attention_layernorm.register_forward_pre_hook(
                keep_input(f"{b}.hook_resid_mid")))
        else:
            handles.append(layer.post_attention_layernorm.register_forward_hook(keep(f"{b}.hook_attn_out")))
            handles.append(layer.pre_feedforward_layernorm.register_forward_pre_hook(
                keep_input(f"{b}.hook_resid_mid")))
            # TransformerLens's hook_mlp_out is after the post-feedforward norm.
            handles.append(layer.post_feedforward_layernorm.register_forward_hook(keep(f"{b}.hook_mlp_out")))
    # No ln_final.hook_normalized: TransformerLens's is x / rms before the
    # norm weight, patchbench's is the norm's output.
    return handles


def check(model, store: dict, out, ids: list[int]) -> None:
    """Cross-checks of the Gemma hooks, and that the fixture exercises what it claims."""
    cfg, T = model.config, len(ids)
    store["hook_embed"] = out.hidden_states[0][0].detach().clone()
    with torch.no_grad():
        raw = model.model.embed_tokens.weight[torch.tensor(ids)]
        scale = torch.tensor(cfg.hidden_size ** 0.5, dtype=torch.float32)
        assert torch.equal(store["hook_embed"], raw * scale), "hook_embed is not the scaled embedding"
    for l in range(cfg.num_hidden_layers):
        b = f"blocks.{l}"
        rp, mid = store[f"{b}.hook_resid_pre"], store[f"{b}.hook_resid_mid"]
        err = float((rp + store[f"{b}.hook_attn_out"] - mid).abs().max())
        assert err < 1e-5, f"{b}: resid_pre + attn_out != resid_mid ({err})"
        nxt = out.hidden_states[l + 1][0]
        if l + 1 < cfg.num_hidden_layers:
            err = float((mid + store[f"{b}.hook_mlp_out"] - nxt).abs().max())
            assert err < 1e-5, f"{b}: resid_mid + mlp_out != next resid_pre ({err})"
        pat = store[f"{b}.attn.hook_pattern"]
        local = getattr(cfg, "layer_types", None) and cfg.layer_types[l] == "sliding_attention"
        if local:
            # Keys more than the window behind the query get no attention.
            q, k = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
            assert float(pat[:, q - k >= cfg.sliding_window].abs().max()) == 0.0, f"{b}: window leaks"
            assert T > cfg.sliding_window
    if cfg.model_type != "gemma":
        kinds = cfg.layer_types
        assert "sliding_attention" in kinds and "full_attention" in kinds, kinds


def softcap_matters(model, ids: list[int], logits: torch.Tensor) -> None:
    """The soft-caps must bend this model's numbers, or the fixture would not test them."""
    cfg = model.config
    if cfg.model_type == "gemma":
        return
    saved = (cfg.attn_logit_softcapping, cfg.final_logit_softcapping)
    if saved == (None, None):
        return
    attns = [layer.self_attn for layer in model.model.layers]
    try:
        cfg.attn_logit_softcapping = cfg.final_logit_softcapping = None
        for a in attns:
            a.attn_logit_softcapping = None
        with torch.no_grad():
            uncapped = model(torch.tensor([ids]), use_cache=False).logits[0]
    finally:
        cfg.attn_logit_softcapping, cfg.final_logit_softcapping = saved
        for a in attns:
            a.attn_logit_softcapping = saved[0]
    diff = float((uncapped - logits).abs().max())
    print(f"{cfg.model_type}: soft-capping changes logits by up to {diff:.3f}")
    assert diff > 0.05, diff


def tl_cross_check(outdir: Path, ids: list[int], store: dict) -> None:
    """Every stored hook equals TransformerLens's; adds its hook_attn_scores to the store."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(outdir), device="cpu", dtype=torch.float32)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(torch.tensor([ids]))
    assert torch.equal(logits[0], store["logits"]), "TransformerLens logits differ"
    for k, v in store.items():
        if k == "logits":
            continue
        err = float((cache[k][0] - v).abs().max())
        assert err == 0.0, f"{outdir.name}: {k} differs from TransformerLens by {err}"
    n = 0
    for k in cache.keys():
        if k.endswith("attn.hook_attn_scores"):
            s = cache[k][0].detach().clone()
            store[k] = torch.where(s < -1e30, torch.tensor(float("-inf")), s)
            n += 1
    assert n == bridge.cfg.n_layers, n
    print(f"{outdir.name}: {len(store) - 1 - n} hooks equal TransformerLens's; {n} attn_scores kept")
