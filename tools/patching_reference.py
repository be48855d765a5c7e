#!/usr/bin/env python3
"""Reference activation-patching results from TransformerLens `patching.py`.

patchbench promises the numbers of TransformerLens's `patching.py`. This script
produces them, with TransformerLens itself, for the tiny Hugging Face fixtures
`tests/fixtures/gpt2-tiny` and `tests/fixtures/llama-tiny` (grouped-query
attention: 4 query heads, 2 key/value heads), and `tests/patching_reference.rs`
checks patchbench's engine against them cell by cell.

Implementation
--------------
`transformer_lens.HookedTransformer`, built from a `HookedTransformerConfig`
that mirrors the fixture's config.json (the same fields TransformerLens's own
`convert_hf_model_config` derives for GPT2LMHeadModel / LlamaForCausalLM),
weights converted with `transformer_lens.pretrained.weight_conversions`
(`convert_gpt2_weights`, `convert_llama_weights`; GQA through
`n_key_value_heads`) and loaded with `load_and_process_state_dict` with EVERY
processing flag off (fold_ln, center_writing_weights, center_unembed,
fold_value_biases, refactor_factored_attn_matrices), so activations keep the
raw-weight meaning patchbench uses (`fold_value_biases` in particular would
change `hook_z`, which `head_out` patches). Before any patching the script
asserts that every loaded parameter equals the converted weight and that the
HookedTransformer's logits equal the Hugging Face model's (eager attention,
float32) within 1e-4 at every position of both prompts.

TransformerLens 4.0 removed HookedTransformer (its `patching.py` runs on
TransformerBridge); this script needs the last 3.x release, which still has it
(the fixtures were written with TransformerLens 3.9.0, torch 2.15.0 and
transformers 5.24.0, the CPU being enough):

    python3 -m venv /tmp/tl3venv
    /tmp/tl3venv/bin/pip install torch transformers "transformer_lens==3.9.0"
    /tmp/tl3venv/bin/python tools/patching_reference.py

The sweeps are TransformerLens's own functions, run in the denoising direction
(the clean cache patched into the corrupted run, which is what `patching.py`
does), one per activation-patching target patchbench shares with it:
get_act_patch_resid_pre, get_act_patch_resid_mid, get_act_patch_attn_out,
get_act_patch_mlp_out, get_act_patch_attn_head_{out,q,k,v,pattern}_all_pos,
get_act_patch_attn_head_{out,q,k,v,pattern}_by_pos,
get_act_patch_attn_head_all_pos_every and get_act_patch_block_every.
TransformerLens 3.9.0 has no get_act_patch_resid_post; resid_post is its
generic_activation_patch with its layer_pos_patch_setter on
blocks.{l}.hook_resid_post (exactly how its resid_pre/resid_mid functions are
built). Not written, for want of a patchbench target:
get_act_patch_attn_head_by_pos_every (the five *_by_pos sweeps, stacked) and
get_act_patch_attn_head_pattern_dest_src_pos. ROME's traces (patchbench's
trace_* targets) are not TransformerLens functions. TransformerLens 3.x takes
one scalar metric: each sweep runs once with logit_diff as its metric, which
also records the other metrics of every patched run (see all_metrics):

  logit_diff  logits[0, -1, answer] - logits[0, -1, wrong]
  logprob     log_softmax(logits[0, -1])[answer]
  kl          KL(clean || patched) = sum_v p_clean(v) (log p_clean(v) - log p_patched(v))
              over the vocabulary at the last position

The model runs in float32, as patchbench's test does; the metrics are then
evaluated in float64 from the float32 logits.

Layouts are TransformerLens's, which are also patchbench's (no conversion):
resid_* / attn_out / mlp_out [layer, pos]; head_* [layer, head] (key/value
heads: n_key_value_heads of them under grouped-query attention, an axis
patchbench calls kv_head); *_by_pos [layer, pos, head] except
head_pattern_by_pos [layer, head, dest_pos]; heads_every [component, layer,
head] with components output, query, key, value, pattern (TransformerLens pads
the key/value rows with 0.0 beyond n_key_value_heads; null is written there,
where patchbench has no cell); block_every [component, layer, pos] with
components resid_pre, attn_out, mlp_out.

Tokens: each fixture's tokenizer.json with its default special-token handling
(llama-tiny's post-processor prepends <s>; gpt2-tiny adds nothing), checked
against transformers' AutoTokenizer; the two prompts must tokenise to the same
length and the answers to one token each.

Writes tests/fixtures/<name>/patching_reference.json.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import warnings
from functools import partial
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # patching.py shows a bar per sweep

import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

warnings.filterwarnings("ignore", category=DeprecationWarning)

try:
    import transformer_lens
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens import patching
    from transformer_lens.pretrained.weight_conversions import (
        convert_gpt2_weights,
        convert_llama_weights,
    )
except ImportError as e:  # TransformerLens >= 4.0 has no HookedTransformer
    sys.exit(
        f"needs transformer_lens with HookedTransformer (3.x, e.g. 3.9.0): {e}\n"
        "see the module docstring for a venv recipe"
    )

REPO = Path(__file__).resolve().parent.parent
FIXTURES = ["gpt2-tiny", "llama-tiny"]
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When John and Mary went to the store, John gave a drink to"
ANSWER = " Mary"
WRONG = " John"
LOGIT_TOL = 1e-4

# Sweep name (= patchbench target) -> (TransformerLens function, axes, hook name per
# layer). Every activation-patching target patchbench and TransformerLens share; `None`
# as the function means TransformerLens 3.9.0 has no ready-made function for it and
# the sweep is `patching.generic_activation_patch` with TransformerLens's own patch
# setter on the hook (see GENERIC). The key/value head axes are `kv_head` when the
# model has fewer key/value heads than query heads (patchbench's name), else `head`.
SWEEPS = {
    "resid_pre": ("get_act_patch_resid_pre", ["layer", "pos"], "blocks.{l}.hook_resid_pre"),
    "resid_mid": ("get_act_patch_resid_mid", ["layer", "pos"], "blocks.{l}.hook_resid_mid"),
    "resid_post": (None, ["layer", "pos"], "blocks.{l}.hook_resid_post"),
    "attn_out": ("get_act_patch_attn_out", ["layer", "pos"], "blocks.{l}.hook_attn_out"),
    "mlp_out": ("get_act_patch_mlp_out", ["layer", "pos"], "blocks.{l}.hook_mlp_out"),
    "head_out": ("get_act_patch_attn_head_out_all_pos", ["layer", "head"], "blocks.{l}.attn.hook_z"),
    "head_q": ("get_act_patch_attn_head_q_all_pos", ["layer", "head"], "blocks.{l}.attn.hook_q"),
    "head_k": ("get_act_patch_attn_head_k_all_pos", ["layer", "KV"], "blocks.{l}.attn.hook_k"),
    "head_v": ("get_act_patch_attn_head_v_all_pos", ["layer", "KV"], "blocks.{l}.attn.hook_v"),
    "head_pattern": (
        "get_act_patch_attn_head_pattern_all_pos",
        ["layer", "head"],
        "blocks.{l}.attn.hook_pattern",
    ),
    "head_out_by_pos": (
        "get_act_patch_attn_head_out_by_pos",
        ["layer", "pos", "head"],
        "blocks.{l}.attn.hook_z",
    ),
    "head_q_by_pos": (
        "get_act_patch_attn_head_q_by_pos",
        ["layer", "pos", "head"],
        "blocks.{l}.attn.hook_q",
    ),
    "head_k_by_pos": (
        "get_act_patch_attn_head_k_by_pos",
        ["layer", "pos", "KV"],
        "blocks.{l}.attn.hook_k",
    ),
    "head_v_by_pos": (
        "get_act_patch_attn_head_v_by_pos",
        ["layer", "pos", "KV"],
        "blocks.{l}.attn.hook_v",
    ),
    "head_pattern_by_pos": (
        "get_act_patch_attn_head_pattern_by_pos",
        ["layer", "head", "dest_pos"],
        "blocks.{l}.attn.hook_pattern",
    ),
    "heads_every": (
        "get_act_patch_attn_head_all_pos_every",
        ["component", "layer", "head"],
        "blocks.{l}.attn.hook_z | hook_q | hook_k | hook_v | hook_pattern",
    ),
    "block_every": (
        "get_act_patch_block_every",
        ["component", "layer", "pos"],
        "blocks.{l}.hook_resid_pre | hook_attn_out | hook_mlp_out",
    ),
}
# Sweeps without a get_act_patch_* function in TransformerLens 3.9.0:
# (activation name for utils.get_act_name, patch setter, index axis names).
GENERIC = {
    "resid_post": ("resid_post", "layer_pos_patch_setter", ("layer", "pos")),
}
# TransformerLens functions with no patchbench target, not written:
# get_act_patch_attn_head_by_pos_every (the five *_by_pos sweeps stacked, which are
# written one by one) and get_act_patch_attn_head_pattern_dest_src_pos (one cell per
# (head, dest, src) entry of the pattern).
HEADS_EVERY_COMPONENTS = ["output", "query", "key", "value", "pattern"]
BLOCK_COMPONENTS = ["resid_pre", "attn_out", "mlp_out"]


# --------------------------------------------------------------------------- models


def tl_config(hf_cfg) -> HookedTransformerConfig:
    """The HookedTransformerConfig TransformerLens derives for this HF config
    (loading_from_pretrained.convert_hf_model_config), built by hand because
    the fixtures are local directories, not known model names."""
    arch = hf_cfg.architectures[0]
    if arch == "GPT2LMHeadModel":
        d = dict(
            d_model=hf_cfg.n_embd,
            d_head=hf_cfg.n_embd // hf_cfg.n_head,
            n_heads=hf_cfg.n_head,
            d_mlp=hf_cfg.n_inner or 4 * hf_cfg.n_embd,
            n_layers=hf_cfg.n_layer,
            n_ctx=hf_cfg.n_positions,
            eps=hf_cfg.layer_norm_epsilon,
            d_vocab=hf_cfg.vocab_size,
            act_fn=hf_cfg.activation_function,
            use_attn_scale=hf_cfg.scale_attn_weights,
            use_local_attn=False,
            scale_attn_by_inverse_layer_idx=hf_cfg.scale_attn_by_inverse_layer_idx,
            normalization_type="LN",
            positional_embedding_type="standard",
            default_prepend_bos=False,
        )
        assert not hf_cfg.reorder_and_upcast_attn
    elif arch == "LlamaForCausalLM":
        head_dim = getattr(hf_cfg, "head_dim", None) or hf_cfg.hidden_size // hf_cfg.num_attention_heads
        assert head_dim == hf_cfg.hidden_size // hf_cfg.num_attention_heads
        rope = getattr(hf_cfg, "rope_parameters", None) or {}
        theta = rope.get("rope_theta", getattr(hf_cfg, "rope_theta", None))
        assert rope.get("rope_type", "default") == "default", rope
        assert not hf_cfg.attention_bias and not hf_cfg.mlp_bias
        d = dict(
            d_model=hf_cfg.hidden_size,
            d_head=head_dim,
            n_heads=hf_cfg.num_attention_heads,
            d_mlp=hf_cfg.intermediate_size,
            n_layers=hf_cfg.num_hidden_layers,
            n_ctx=hf_cfg.max_position_embeddings,
            eps=hf_cfg.rms_norm_eps,
            d_vocab=hf_cfg.vocab_size,
            act_fn=hf_cfg.hidden_act,
            n_key_value_heads=(
                hf_cfg.num_key_value_heads
                if hf_cfg.num_key_value_heads != hf_cfg.num_attention_heads
                else None
            ),
            normalization_type="RMS",
            positional_embedding_type="rotary",
            rotary_adjacent_pairs=False,
            rotary_dim=head_dim,
            rotary_base=float(theta),
            final_rms=True,
            gated_mlp=True,
            default_prepend_bos=True,
        )
    else:
        raise SystemExit(f"unsupported architecture {arch}")
    return HookedTransformerConfig(
        **d,
        original_architecture=arch,
        dtype=torch.float32,
        device="cpu",
        seed=0,
    )


def build_tl(hf_model, hf_cfg) -> tuple[HookedTransformer, dict]:
    cfg = tl_config(hf_cfg)
    arch = hf_cfg.architectures[0]
    convert = convert_gpt2_weights if arch == "GPT2LMHeadModel" else convert_llama_weights
    with torch.no_grad():
        sd = {k: v.detach().clone() for k, v in convert(hf_model, cfg).items()}
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        {k: v.clone() for k, v in sd.items()},
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    model.eval()
    # No processing happened: every converted weight is in the model unchanged.
    loaded = model.state_dict()
    for k, v in sd.items():
        assert k in loaded, f"{k} not a HookedTransformer parameter"
        assert torch.equal(loaded[k], v), f"{k} changed on load"
    info = {
        "config": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                   for k, v in cfg.to_dict().items()
                   if k in ("d_model", "d_head", "n_heads", "n_key_value_heads", "d_mlp", "n_layers",
                            "n_ctx", "eps", "d_vocab", "act_fn", "normalization_type",
                            "positional_embedding_type", "rotary_dim", "rotary_base",
                            "rotary_adjacent_pairs", "gated_mlp", "final_rms", "use_attn_scale",
                            "original_architecture")},
        "weight_conversion": convert.__name__,
        "weight_processing": "none (load_and_process_state_dict with fold_ln, center_writing_weights, "
        "center_unembed, fold_value_biases, refactor_factored_attn_matrices all False; "
        "every loaded parameter checked equal to the converted weight)",
    }
    return model, info


# --------------------------------------------------------------------------- tokens


def tokenize(fixture: Path) -> dict:
    tok = Tokenizer.from_file(str(fixture / "tokenizer.json"))
    hf_tok = AutoTokenizer.from_pretrained(fixture)

    def enc(text: str) -> list[int]:
        ids = tok.encode(text).ids  # default special-token handling
        assert ids == hf_tok(text)["input_ids"], f"tokenizers and transformers disagree on {text!r}"
        return ids

    def single(text: str) -> int:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert len(ids) == 1, f"{text!r} is not one token: {ids}"
        return ids[0]

    clean, corrupted = enc(CLEAN), enc(CORRUPTED)
    assert len(clean) == len(corrupted), f"token lengths differ: {len(clean)} vs {len(corrupted)}"
    answer, wrong = single(ANSWER), single(WRONG)
    assert answer != wrong
    return {
        "clean_ids": clean,
        "corrupted_ids": corrupted,
        "clean_tokens": [tok.id_to_token(i) for i in clean],
        "corrupted_tokens": [tok.id_to_token(i) for i in corrupted],
        "answer_id": answer,
        "wrong_id": wrong,
    }


# --------------------------------------------------------------------------- metrics


def last_logprobs(logits: torch.Tensor) -> torch.Tensor:
    assert logits.shape[0] == 1
    return torch.log_softmax(logits[0, -1].double(), dim=-1)


def logit_diff(logits, answer, wrong):
    last = logits[0, -1].double()
    return last[answer] - last[wrong]


def logprob(logits, answer):
    return last_logprobs(logits)[answer]


def kl(logits, clean_lp):
    lp = last_logprobs(logits)
    return (clean_lp.exp() * (clean_lp - lp)).sum()


# --------------------------------------------------------------------------- sweeps


def sweep_function(sweep: str, fn_name):
    """The TransformerLens function that runs `sweep`, and its name for the JSON."""
    if fn_name is not None:
        return getattr(patching, fn_name), f"transformer_lens.patching.{fn_name}"
    act_name, setter, axes = GENERIC[sweep]
    fn = partial(
        patching.generic_activation_patch,
        patch_setter=getattr(patching, setter),
        activation_name=act_name,
        index_axis_names=axes,
    )
    desc = (
        f"transformer_lens.patching.generic_activation_patch(patch_setter={setter}, "
        f"activation_name={act_name!r}, index_axis_names={axes!r})"
    )
    return fn, desc


def all_metrics(fn, model, corrupted, clean_cache, metric_fns: dict, sweep: str) -> dict:
    """Runs TransformerLens's sweep function once, with logit_diff as its metric, and
    records every metric of each patched run's logits as TransformerLens calls the
    metric (once per cell, in its index order: row-major, the stacked sweeps of the
    *_every functions one after another). The logit_diff TransformerLens returns
    must equal the recorded one cell by cell, which checks the order. (Running the
    sweep once per metric gives the same numbers at three times the cost.)"""
    recorded = []

    def metric(logits):
        values = {m: f(logits) for m, f in metric_fns.items()}
        recorded.append(values)
        return values["logit_diff"]

    ld = fn(model, corrupted, clean_cache, metric)
    # Cells TransformerLens fills with padding instead of a patched run.
    flat = ld.flatten()
    real = torch.ones_like(flat, dtype=torch.bool)
    if sweep == "heads_every":
        nkv = n_kv(model.cfg)
        pad = torch.zeros(ld.shape, dtype=torch.bool)
        pad[2:4, :, nkv:] = True
        real = ~pad.flatten()
    assert int(real.sum()) == len(recorded), (sweep, int(real.sum()), len(recorded))
    out = {}
    for m in metric_fns:
        vals = torch.zeros_like(flat)
        vals[real] = torch.tensor([r[m].item() for r in recorded], dtype=flat.dtype)
        out[m] = vals.reshape(ld.shape)
    assert torch.equal(out["logit_diff"], ld), f"{sweep}: recorded metrics out of order"
    return out


def n_kv(cfg) -> int:
    return cfg.n_key_value_heads or cfg.n_heads


def kv_axis(cfg) -> str:
    return "kv_head" if n_kv(cfg) < cfg.n_heads else "head"


def expected_shape(sweep: str, cfg, n_pos: int) -> list[int]:
    nl, nh, nkv = cfg.n_layers, cfg.n_heads, n_kv(cfg)
    return {
        "resid_pre": [nl, n_pos],
        "resid_mid": [nl, n_pos],
        "resid_post": [nl, n_pos],
        "attn_out": [nl, n_pos],
        "mlp_out": [nl, n_pos],
        "head_out": [nl, nh],
        "head_q": [nl, nh],
        "head_k": [nl, nkv],
        "head_v": [nl, nkv],
        "head_pattern": [nl, nh],
        "head_out_by_pos": [nl, n_pos, nh],
        "head_q_by_pos": [nl, n_pos, nh],
        "head_k_by_pos": [nl, n_pos, nkv],
        "head_v_by_pos": [nl, n_pos, nkv],
        "head_pattern_by_pos": [nl, nh, n_pos],
        "heads_every": [5, nl, nh],
        "block_every": [3, nl, n_pos],
    }[sweep]


def absent_kv_heads(values: list, cfg) -> list:
    """get_act_patch_attn_head_all_pos_every pads the key and value rows with 0.0 for
    head indices beyond n_key_value_heads (GQA), where no key/value head exists; write
    null there (patchbench reports NaN for a cell that does not exist)."""
    nkv = n_kv(cfg)
    for comp in (2, 3):  # key, value
        for row in values[comp]:
            for h in range(nkv, len(row)):
                assert row[h] == 0.0, f"expected TL's zero padding, found {row[h]}"
                row[h] = None
    return values


def check_consistency(sweeps: dict, baselines: dict, toks: dict, n_pos: int) -> None:
    """Cheap sanity checks of TransformerLens's results against each other."""
    for i, comp in enumerate(BLOCK_COMPONENTS):
        got, want = sweeps["block_every"]["logit_diff"][i], sweeps[comp]["logit_diff"]
        assert got == want, f"block_every[{comp}] != {comp}"
    for i, sweep in enumerate(["head_out", "head_q", "head_k", "head_v", "head_pattern"]):
        for got, want in zip(sweeps["heads_every"]["logit_diff"][i], sweeps[sweep]["logit_diff"]):
            assert got[: len(want)] == want, f"heads_every[{sweep}] != {sweep}"
    # The residual leaving block l is the one entering block l + 1.
    post, pre = sweeps["resid_post"]["logit_diff"], sweeps["resid_pre"]["logit_diff"]
    for l in range(len(post) - 1):
        for p in range(n_pos):
            assert math.isclose(post[l][p], pre[l + 1][p], abs_tol=1e-5), (l, p)
    # Patching resid_pre at layer 0 where the two prompts share a token changes nothing.
    same = [p for p in range(n_pos) if toks["clean_ids"][p] == toks["corrupted_ids"][p]]
    for p in same:
        v = sweeps["resid_pre"]["logit_diff"][0][p]
        assert math.isclose(v, baselines["corrupted"]["logit_diff"], abs_tol=1e-5), (p, v)


# --------------------------------------------------------------------------- main


def nested(t: torch.Tensor):
    return t.double().tolist()


def run_fixture(name: str) -> dict:
    fixture = REPO / "tests" / "fixtures" / name
    hf_model = AutoModelForCausalLM.from_pretrained(
        fixture, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    hf_cfg = hf_model.config
    toks = tokenize(fixture)
    clean = torch.tensor([toks["clean_ids"]])
    corrupted = torch.tensor([toks["corrupted_ids"]])

    model, info = build_tl(hf_model, hf_cfg)

    # The HookedTransformer must be the Hugging Face model.
    max_logit_diff = 0.0
    with torch.no_grad():
        for ids in (clean, corrupted):
            hf = hf_model(ids).logits
            tl = model(ids)
            assert hf.shape == tl.shape
            d = (hf - tl).abs().max().item()
            max_logit_diff = max(max_logit_diff, d)
            assert d <= LOGIT_TOL, f"{name}: TL logits differ from HF by {d}"
    print(f"{name}: HookedTransformer vs transformers logits, max |diff| = {max_logit_diff:.3g}")

    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean)
        corrupted_logits = model(corrupted)
    a, w = toks["answer_id"], toks["wrong_id"]
    clean_lp = last_logprobs(clean_logits)
    metric_fns = {
        "logit_diff": partial(logit_diff, answer=a, wrong=w),
        "kl": partial(kl, clean_lp=clean_lp),
        "logprob": partial(logprob, answer=a),
    }
    baselines = {
        run: {m: fn(logits).item() for m, fn in metric_fns.items()}
        for run, logits in (("clean", clean_logits), ("corrupted", corrupted_logits))
    }

    n_pos = clean.shape[1]
    sweeps = {}
    with torch.no_grad():
        for sweep, (fn_name, axes, hook) in SWEEPS.items():
            fn, tl_function = sweep_function(sweep, fn_name)
            entry = {
                "axes": [kv_axis(model.cfg) if a == "KV" else a for a in axes],
                "tl_function": tl_function,
                "hook": hook,
            }
            if sweep == "block_every":
                entry["components"] = BLOCK_COMPONENTS
            if sweep == "heads_every":
                entry["components"] = HEADS_EVERY_COMPONENTS
            shape = None
            out = all_metrics(fn, model, corrupted, clean_cache, metric_fns, sweep)
            shape = list(out["logit_diff"].shape)
            for metric, values in out.items():
                entry[metric] = nested(values)
                if sweep == "heads_every":
                    entry[metric] = absent_kv_heads(entry[metric], model.cfg)
            expected = expected_shape(sweep, model.cfg, n_pos)
            assert shape == expected, f"{sweep}: TL shape {shape}, expected {expected}"
            entry["shape"] = shape
            sweeps[sweep] = entry
            print(f"{name}: {sweep} {shape}")

    check_consistency(sweeps, baselines, toks, n_pos)

    return {
        "fixture": name,
        "implementation": "transformer_lens.HookedTransformer + transformer_lens.patching "
        f"(TransformerLens {transformer_lens_version()}), every sweep",
        "implementation_per_sweep": {
            s: ("transformer_lens" if f else "transformer_lens generic_activation_patch")
            for s, (f, _, _) in SWEEPS.items()
        },
        "versions": versions(),
        "direction": "denoise (clean activations patched into the corrupted run)",
        "model": info,
        "tl_vs_hf_max_abs_logit_diff": max_logit_diff,
        "prompts": {"clean": CLEAN, "corrupted": CORRUPTED, "answer": ANSWER, "wrong": WRONG},
        **toks,
        "metrics": {
            "logit_diff": "logits[0,-1,answer_id] - logits[0,-1,wrong_id]",
            "logprob": "log_softmax(logits[0,-1])[answer_id]",
            "kl": "sum_v p_clean(v) * (log p_clean(v) - log p_patched(v)) at the last position",
            "precision": "model float32; metrics in float64 from the float32 logits; "
            "TransformerLens 3.x stores each result in a float32 tensor",
        },
        "layout": "TransformerLens's own, no conversion: [layer,pos], [layer,head], "
        "by_pos [layer,pos,head], head_pattern_by_pos [layer,head,dest_pos], "
        "heads_every [component,layer,head] (null where a key/value head does not exist), "
        "block_every [component,layer,pos]",
        "baselines": baselines,
        "sweeps": sweeps,
    }


def transformer_lens_version() -> str:
    from importlib.metadata import version

    return version("transformer_lens")


def versions() -> dict:
    return {
        "transformer_lens": transformer_lens_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    torch.set_grad_enabled(False)
    # The models are tiny: one thread is as fast and does not fight other work.
    torch.set_num_threads(1)
    for name in FIXTURES:
        ref = run_fixture(name)
        out = REPO / "tests" / "fixtures" / name / "patching_reference.json"
        out.write_text(json.dumps(ref, indent=1) + "\n")
        print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
