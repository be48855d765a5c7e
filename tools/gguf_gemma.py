"""Gemma GGUF fixtures for tools/make_gguf_fixtures.py (run that, not this):
gemma-tiny, gemma2-tiny and gemma3-tiny converted as llama.cpp's
convert_hf_to_gguf.py converts Gemma (GemmaModel, Gemma2Model, Gemma3Model):

- every `*norm.weight` gets Gemma's +1 folded in (q/k norms included), as the
  converter's modify_tensors does; names from gguf-py's TensorNameMap for the
  architecture (Gemma 1's post_attention_layernorm is the MLP's input norm,
  ffn_norm; from Gemma 2 on it is the attention output norm,
  post_attention_norm, and pre_feedforward_layernorm is ffn_norm);
- Q/K rows are not permuted (llama.cpp runs Gemma with NeoX-style rotary);
- the tied unembedding is not written (gemma-tiny, gemma2-tiny); gemma3-tiny's
  untied lm_head is written as output.weight;
- the tokenizer is the fixtures' SentencePiece model (retrained, deterministic,
  by gemma_fixtures.gemma_spm and checked against the committed tokenizer.json),
  written as `_create_vocab_sentencepiece` writes a tokenizer.model: pieces,
  scores, token types; add_space_prefix false, BOS added (GemmaModel.set_vocab).

Every tensor is F32, so the GGUF model must equal the Hugging Face directory it
came from (tests/gguf_families.rs compares logits and hooks within 1e-5); the
quantized types are covered by the other fixtures and the real Gemma 3 270M.

What llama.cpp's converter does not write but the tiny fixtures need: llama.cpp
takes the query scale (key_length^-0.5), the sliding-window pattern (Gemma 2:
every other layer; Gemma 3: 5 local then 1 global), the Gemma 3 local rope base
(10000) and Gemma 3's lack of final soft-capping from the family. The tiny
fixtures differ from all four (query_pre_attn_scalar 24 with head_dim 16, a
3-layer pattern, final soft-cap 1.0), so those values are written with gguf-py's
standard keys ({arch}.attention.scale, {arch}.attention.sliding_window_pattern,
{arch}.rope.freq_base_swa, {arch}.final_logit_softcapping) exactly when they
differ from llama.cpp's fixed value; patchbench reads them when present and uses
llama.cpp's values otherwise (the real Gemma 3 270M has none of them).
"""

from __future__ import annotations

import sentencepiece as spm_lib
from tokenizers import Tokenizer

import gguf

Q = gguf.GGMLQuantizationType
# gemma_fixtures.gemma_spm's user_defined_symbols.
USER_DEFINED = {"<mask>", "<start_of_turn>", "<end_of_turn>"}
ARCHES = {"gemma": gguf.MODEL_ARCH.GEMMA, "gemma2": gguf.MODEL_ARCH.GEMMA2, "gemma3": gguf.MODEL_ARCH.GEMMA3}


def convert_gemma(hf: str, arch_name: str, h):
    """`h` is make_gguf_fixtures (hf_model, Converted, FIX, ...)."""
    model, sd = h.hf_model(hf)
    cfg = model.config
    n_layers = cfg.num_hidden_layers
    tmap = h.tensor_map(ARCHES[arch_name], n_layers)
    conv = h.Converted(sd)
    for k, v in sd.items():
        if k == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        name = h.gguf_name(tmap, k)
        if k.endswith("norm.weight"):
            conv.add(name, v + 1, Q.F32, None)
            conv.hf_roundtrip[k] = v
        else:
            conv.add(name, v, Q.F32, k)

    w = gguf.GGUFWriter(None, arch_name)
    w.add_name(hf)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    extra = {}
    kinds = [t == "sliding_attention" for t in getattr(cfg, "layer_types", None) or []]
    if arch_name == "gemma":
        assert cfg.rope_parameters["rope_theta"] == 10000.0  # llama.cpp's default; not written
    else:
        w.add_sliding_window(cfg.sliding_window)
        if cfg.query_pre_attn_scalar != cfg.head_dim:
            extra["attention.scale"] = cfg.query_pre_attn_scalar ** -0.5
            w.add_attention_scale(extra["attention.scale"])
    if arch_name == "gemma2":
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
        w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
        assert kinds == [i % 2 == 0 for i in range(n_layers)], "llama.cpp's Gemma 2 pattern"
    if arch_name == "gemma3":
        rp = cfg.rope_parameters
        w.add_rope_freq_base(rp["full_attention"]["rope_theta"])
        if rp["full_attention"].get("rope_type") == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(rp["full_attention"]["factor"])
        if rp["sliding_attention"]["rope_theta"] != 10000.0:
            extra["rope.freq_base_swa"] = rp["sliding_attention"]["rope_theta"]
            w.add_key_value(gguf.Keys.Rope.FREQ_BASE_SWA.format(arch=arch_name), extra["rope.freq_base_swa"],
                            gguf.GGUFValueType.FLOAT32)
        if kinds != [(i + 1) % 6 != 0 for i in range(n_layers)]:
            extra["attention.sliding_window_pattern"] = kinds
            w.add_sliding_window_pattern(kinds)
        if cfg.final_logit_softcapping is not None:
            extra["final_logit_softcapping"] = cfg.final_logit_softcapping
            w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    tok = Tokenizer.from_file(str(h.FIX / hf / "tokenizer.json"))
    sentencepiece_vocab(w, tok)
    conv.extra_keys = extra
    return model, conv, w, tok


def sentencepiece_vocab(w: gguf.GGUFWriter, tok: Tokenizer) -> None:
    """The fixtures' SentencePiece model as llama.cpp writes a Gemma vocabulary. Types:
    CONTROL for <pad>/<eos>/<bos> and user-defined symbols tokenizer.json marks special
    (added_tokens_decoder with special=True), USER_DEFINED for the other user-defined
    ones, BYTE for <0xNN>, UNKNOWN for <unk>."""
    from gemma_fixtures import gemma_spm
    from make_fixtures import CORPUS, VOCAB_SIZE

    sp = spm_lib.SentencePieceProcessor(model_proto=gemma_spm(CORPUS, VOCAB_SIZE))
    vocab = tok.get_vocab(with_added_tokens=True)
    assert sp.vocab_size() == len(vocab)
    special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        piece = sp.id_to_piece(i)
        assert vocab[piece] == i, f"the retrained SentencePiece model differs from tokenizer.json at {i}: {piece!r}"
        tokens.append(piece)
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i) or piece in special:
            t = gguf.TokenType.CONTROL
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif piece in USER_DEFINED:
            t = gguf.TokenType.USER_DEFINED
        else:
            t = gguf.TokenType.NORMAL
        types.append(t)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
