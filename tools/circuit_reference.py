#!/usr/bin/env python3
"""Reference exact edge patching, written independently in PyTorch.

patchbench's exact edge patching (src/circuits/exact.rs) is checked against
this script's numbers on the tiny Hugging Face fixtures `tests/fixtures/
gpt2-tiny` and `tests/fixtures/llama-tiny` (grouped-query attention) by
`tests/circuits.rs`.

The forward pass here is written from the models' definitions with each
receiver's input explicit: every query head, key/value head and MLP reads
its own copy of the residual stream (plus an edit), normalised by its own
norm; every head's output `z_h W_O^h` and every MLP's output are recorded as
senders. Before anything is patched the script asserts that this forward
equals the Hugging Face model's logits (eager attention, float32) within
1e-4. Rotary embeddings use the Hugging Face model's own rotary module and
`apply_rotary_pos_emb`, which are the definition being matched.

Edge u -> v, denoising (the clean run's value patched into the corrupted
run): receiver v reads resid + out_u(clean) - out_u(corrupted); the result
is the change of logit(answer) - logit(wrong) at the last position. Every
edge of the graph is patched, one forward each.

Path patching (Wang et al. 2022), written from the paper's two steps:
step 1 runs the corrupted input with the sender's output taken from the
clean run and every other head's output frozen to the corrupted run's
(MLPs and LayerNorm scales recomputed), recording what each receiver reads;
step 2 runs the corrupted input with each receiver reading its recorded
input instead. Each edge's sender -> {receiver} is recorded as `path`, and a
few sender -> receiver sets as `path_sets`; `path_frozen_mlps` freezes the
MLPs too (then it must equal exact edge patching).

    /work/venv/bin/python tools/circuit_reference.py

writes tests/fixtures/<name>/circuit_reference.json (a few KB each).
"""

import json
import math
import pathlib

import torch
import transformers
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLEAN = [3, 17, 9, 250, 4, 11, 60]
CORRUPTED = [3, 17, 9, 251, 4, 11, 60]
ANSWER, WRONG = 5, 8


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class Ref:
    """The model as plain tensors, with per-receiver input edits."""

    def __init__(self, hf):
        self.hf = hf
        c = hf.config
        self.gpt2 = c.model_type == "gpt2"
        self.L = c.num_hidden_layers if not self.gpt2 else c.n_layer
        self.H = c.num_attention_heads if not self.gpt2 else c.n_head
        self.Hkv = self.H if self.gpt2 else c.num_key_value_heads
        self.d = c.hidden_size if not self.gpt2 else c.n_embd
        self.dh = self.d // self.H if self.gpt2 else c.head_dim

    def norm(self, mod, x):
        if self.gpt2:
            return torch.nn.functional.layer_norm(x, (self.d,), mod.weight, mod.bias, mod.eps)
        var = x.pow(2).mean(-1, keepdim=True)
        return mod.weight * (x * torch.rsqrt(var + mod.variance_epsilon))

    def proj(self, block, kind, x, head):
        """Head `head`'s query/key/value from its normalised input `x` [T, d]."""
        dh = self.dh
        if self.gpt2:
            w, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # [d, 3d] (Conv1D)
            off = {"q": 0, "k": self.d, "v": 2 * self.d}[kind] + head * dh
            return x @ w[:, off:off + dh] + b[off:off + dh]
        lin = {"q": block.self_attn.q_proj, "k": block.self_attn.k_proj, "v": block.self_attn.v_proj}[kind]
        return x @ lin.weight[head * dh:(head + 1) * dh, :].T

    def forward(self, tokens, edits=None, overrides=None, replace=None, inputs=None):
        """Last-position logits and every sender's output.

        edits: {(layer, 'q'|'k'|'v', head) or (layer, 'mlp') or ('logits',): [T, d]}
        overrides: {sender name: [T, d]} written instead of the sender's output
        replace: {receiver key: [T, d]} read by the receiver instead of its input
        inputs: a dict that receives every receiver's input, by key
        """
        edits = edits or {}
        overrides = overrides or {}
        replace = replace or {}
        inputs = {} if inputs is None else inputs

        def read(key, x):
            v = replace.get(key, x + edits.get(key, zero))
            inputs[key] = v
            return v
        hf, T = self.hf, len(tokens)
        ids = torch.tensor(tokens)
        pos = torch.arange(T)
        base = hf.transformer if self.gpt2 else hf.model
        if self.gpt2:
            x = base.wte.weight[ids] + base.wpe.weight[pos]
        else:
            x = base.embed_tokens.weight[ids]
            cos, sin = base.rotary_emb(x[None], pos[None])
        zero = torch.zeros(T, self.d)
        x = overrides.get("input", x)
        senders = {"input": x}
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(self.L):
            block = base.h[l] if self.gpt2 else base.layers[l]
            ln1 = block.ln_1 if self.gpt2 else block.input_layernorm
            qkv = {}
            for kind, n in (("q", self.H), ("k", self.Hkv), ("v", self.Hkv)):
                qkv[kind] = [
                    self.proj(block, kind, self.norm(ln1, read((l, kind, h), x)), h)
                    for h in range(n)
                ]
            if not self.gpt2:
                for kind in ("q", "k"):
                    qkv[kind] = [apply_rotary_pos_emb(t[None, None], t[None, None], cos, sin)[0][0, 0]
                                 for t in qkv[kind]]
            results = []
            group = self.H // self.Hkv
            for h in range(self.H):
                q, k, v = qkv["q"][h], qkv["k"][h // group], qkv["v"][h // group]
                att = torch.softmax(q @ k.T / math.sqrt(self.dh) + mask, -1)
                z = att @ v
                if self.gpt2:
                    wo = block.attn.c_proj.weight[h * self.dh:(h + 1) * self.dh, :]
                else:
                    wo = block.self_attn.o_proj.weight[:, h * self.dh:(h + 1) * self.dh].T
                results.append(overrides.get(f"a{l}.h{h}", z @ wo))
                senders[f"a{l}.h{h}"] = results[-1]
            attn = sum(results)
            if self.gpt2:
                attn = attn + block.attn.c_proj.bias
            mid = x + attn
            mlp_in = read((l, "mlp"), mid)
            if self.gpt2:
                h_ = self.norm(block.ln_2, mlp_in)
                out = gelu_new(h_ @ block.mlp.c_fc.weight + block.mlp.c_fc.bias) @ block.mlp.c_proj.weight + block.mlp.c_proj.bias
            else:
                h_ = self.norm(block.post_attention_layernorm, mlp_in)
                m = block.mlp
                out = m.down_proj(torch.nn.functional.silu(m.gate_proj(h_)) * m.up_proj(h_))
            out = overrides.get(f"m{l}", out)
            senders[f"m{l}"] = out
            x = mid + out
        final = read(("logits",), x)
        fin = base.ln_f if self.gpt2 else base.norm
        logits = hf.lm_head(self.norm(fin, final))
        return logits[-1], senders

    def receivers(self):
        out = []
        kv = "h" if self.Hkv == self.H else "kv"
        for l in range(self.L):
            out += [((l, "q", h), f"a{l}.h{h}<q>", l) for h in range(self.H)]
            out += [((l, "k", g), f"a{l}.{kv}{g}<k>", l) for g in range(self.Hkv)]
            out += [((l, "v", g), f"a{l}.{kv}{g}<v>", l) for g in range(self.Hkv)]
            out.append(((l, "mlp"), f"m{l}", l))
        out.append((("logits",), "logits", self.L))
        return out

    def upstream(self, sender, key, recv_layer):
        """Whether `sender` writes before the receiver `key` reads."""
        if sender == "input" or key == ("logits",):
            return True
        kind, layer = sender[0], int(sender[1:].split(".")[0])
        if key[1] == "mlp" and kind == "a":
            return layer <= recv_layer
        return layer < recv_layer


def path_patch(ref, sender, keys, sc, sk, freeze_mlps=False):
    """Logits of path patching `sender` -> the receivers `keys` (clean into corrupted)."""
    frozen = {n: v for n, v in sk.items() if n.startswith("a") or (freeze_mlps and n.startswith("m"))}
    frozen[sender] = sc[sender]
    recorded = {}
    ref.forward(CORRUPTED, overrides=frozen, inputs=recorded)
    logits, _ = ref.forward(CORRUPTED, replace={k: recorded[k] for k in keys})
    return logits


def main():
    torch.set_grad_enabled(False)
    for name in ("gpt2-tiny", "llama-tiny"):
        d = ROOT / "tests" / "fixtures" / name
        hf = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager")
        hf.eval()
        ref = Ref(hf)
        for toks in (CLEAN, CORRUPTED):
            mine, _ = ref.forward(toks)
            theirs = hf(torch.tensor([toks])).logits[0, -1]
            err = (mine - theirs).abs().max().item()
            assert err < 1e-4, f"{name}: forward differs from Hugging Face by {err}"
        lc, sc = ref.forward(CLEAN)
        lk, sk = ref.forward(CORRUPTED)
        ld = lambda lg: (lg[ANSWER] - lg[WRONG]).item()
        base = ld(lk)
        edges = []
        for sender in sc:
            for key, rname, rl in ref.receivers():
                if not ref.upstream(sender, key, rl):
                    continue
                patched, _ = ref.forward(CORRUPTED, {key: sc[sender] - sk[sender]})
                path = path_patch(ref, sender, [key], sc, sk)
                direct = path_patch(ref, sender, [key], sc, sk, freeze_mlps=True)
                edges.append({
                    "sender": sender,
                    "receiver": rname,
                    "logit_diff": ld(patched) - base,
                    "path": ld(path) - base,
                    "path_frozen_mlps": ld(direct) - base,
                })
        # Receiver sets: every receiver of the last block (and logits), and
        # the keys of every head of the last block, from each sender of block 0.
        recv = ref.receivers()
        last = [(k, n) for k, n, rl in recv if rl >= ref.L - 1]
        keys = [(k, n) for k, n, rl in recv if rl == ref.L - 1 and k[1] == "k"]
        path_sets = []
        for sender in sc:
            if sender != "input" and not sender.startswith(("a0.", "m0")):
                continue
            for group in (last, keys):
                lg = path_patch(ref, sender, [k for k, _ in group], sc, sk)
                path_sets.append({
                    "sender": sender,
                    "receivers": [n for _, n in group],
                    "logit_diff": ld(lg) - base,
                })
        out = {
            "about": "exact edge patching and path patching (denoise) by tools/circuit_reference.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "clean": CLEAN,
            "corrupted": CORRUPTED,
            "answer": ANSWER,
            "wrong": WRONG,
            "clean_logit_diff": ld(lc),
            "corrupted_logit_diff": base,
            "edges": edges,
            "path_sets": path_sets,
        }
        (d / "circuit_reference.json").write_text(json.dumps(out, indent=1) + "\n")
        print(name, len(edges), "edges; largest |effect|", max(abs(e["logit_diff"]) for e in edges))


if __name__ == "__main__":
    main()
