#!/usr/bin/env python3
"""Writes tiny random-weight GGUFs of the model families daehwa claims, for comparison with llama.cpp.

No real Qwen or EXAONE weights are at hand, so the families are checked on files that only have the
right *shape*: each architecture's tensors and metadata (as llama.cpp 0c1e570 reads them), a few
layers of n_embd 64-128 with grouped-query attention, F32/F16 weights drawn from a seeded generator,
and a small byte-level BPE vocabulary (the 256 byte tokens, a few hundred merges learned here from a
fixed English/Korean/code corpus, and the family's special tokens) under the family's
`tokenizer.ggml.pre`. Everything is deterministic: the same command writes the same bytes.

Weights are scaled so that activations stay O(1) through the layers and the logits are spread over a
few units: a comparison of two implementations then measures arithmetic, not overflow or ties.

Usage: scripts/tiny_models.py OUT_DIR [FAMILY ...]
Writes OUT_DIR/<family>.gguf for each family (default: all) and prints one JSON line per file.
`scripts/tiny_models.py OUT_DIR --split FAMILY` also writes OUT_DIR/<family>-split-0000K-of-00003.gguf,
the same model in llama.cpp's gguf-split layout (see write_split).
Requires the `gguf` Python package (pip install gguf==0.19.0, the version vendored by llama.cpp 0c1e570).
"""

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

try:
    import gguf
    import numpy as np
except ImportError as err:  # a clear message beats a traceback
    sys.exit(f"scripts/tiny_models.py needs the `gguf` package ({err}): python3 -m pip install gguf==0.19.0")


# ---------------------------------------------------------------------------------------------
# Tokenizer: a byte-level BPE trained on a fixed corpus.
# ---------------------------------------------------------------------------------------------

CORPUS = """
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran away.
Hello, world! How are you today? I'm fine, thanks; we'll see what they've done.
In 2024 the model scored 87.5 points on 1,234 questions; 3.14159 is pi and 42 is the answer.
def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)
fn main() { let x: Vec<u32> = (0..10).collect(); println!("{:?}", x); }
for (int i = 0; i < 100; i++) { sum += a[i] * b[i]; }
안녕하세요. 저는 대화형 인공지능입니다. 오늘 날씨가 정말 좋네요!
한국어 문장을 잘 처리하는 모델이 필요합니다. 서울은 대한민국의 수도입니다.
대화는 사람과 사람 사이의 이야기입니다. 감사합니다. 다음에 또 만나요.
The weather in Seoul is nice today, and the people there speak Korean (한국어).
""" * 3

# GPT-2's pre-tokenizer regex (simplified to Python's `re`): only used to learn plausible merges.
TRAIN_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d| ?[^\s\w]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE token text)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def train_bpe(n_merges):
    """Greedy BPE: repeatedly merge the most frequent adjacent pair (ties broken by the pair itself,
    so the result does not depend on dict order). Returns the merges in priority order."""
    b2u = bytes_to_unicode()
    words = Counter(tuple(b2u[b] for b in w.encode("utf-8")) for w in TRAIN_SPLIT.findall(CORPUS))
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return merges


def vocabulary(specials, n_merges=320):
    """Token list, token types and merges: the 256 byte tokens, one token per merge, then the
    special tokens (CONTROL type) at the end, as converted Hugging Face vocabularies have them."""
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    merges = train_bpe(n_merges)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for s in specials:
        tokens.append(s)
        types.append(gguf.TokenType.CONTROL)
    return tokens, types, [f"{a} {b}" for a, b in merges]


# ---------------------------------------------------------------------------------------------
# Families.
# ---------------------------------------------------------------------------------------------

# Each family: architecture, hyper-parameters, tokenizer and which optional tensors it carries.
FAMILIES = {
    # The control: plain llama (adjacent-pair RoPE), untied output, Llama 3 style vocabulary.
    "llama": dict(
        arch="llama", seed=1, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=160,
        rope_base=10000.0, eps=1e-5, pre="llama-bpe", add_bos=True, tied=False, dtype=np.float32,
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
        bos="<|begin_of_text|>", eos="<|eot_id|>",
    ),
    # Qwen 2: Q/K/V biases, NeoX RoPE, tied embeddings (like Qwen2-0.5B), plus an output bias,
    # which llama.cpp's qwen2 graph adds when present.
    "qwen2": dict(
        arch="qwen2", seed=2, n_embd=96, n_layer=3, n_head=6, n_head_kv=2, head_dim=16, n_ff=224,
        rope_base=1000000.0, eps=1e-6, pre="qwen2", add_bos=False, tied=True, dtype=np.float32,
        qkv_bias=True, output_bias=True,
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos="<|endoftext|>", eos="<|im_end|>",
    ),
    # Qwen 3: per-head RMS norm of Q and K before RoPE, head size not n_embd / n_head (as in
    # Qwen3-0.6B: 16 heads x 128 > 1024), F16 matrices.
    "qwen3": dict(
        arch="qwen3", seed=3, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=32, n_ff=192,
        rope_base=1000000.0, eps=1e-6, pre="qwen2", add_bos=False, tied=False, dtype=np.float16,
        qk_norm=True,
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos="<|endoftext|>", eos="<|im_end|>",
    ),
    # EXAONE 3.x: llama-like with NeoX RoPE and per-dimension RoPE frequency factors
    # (`rope_freqs.weight`, as its Llama-3-style rope scaling is converted), multi-query attention.
    "exaone": dict(
        arch="exaone", seed=4, n_embd=80, n_layer=2, n_head=5, n_head_kv=1, head_dim=16, n_ff=200,
        rope_base=500000.0, eps=1e-5, pre="exaone", add_bos=True, tied=False, dtype=np.float32,
        rope_freqs=True,
        specials=["[PAD]", "[BOS]", "[EOS]", "[UNK]", "[|system|]", "[|endofturn|]", "[|user|]", "[|assistant|]"],
        bos="[BOS]", eos="[|endofturn|]",
    ),
    # EXAONE 4 (the 1.2B layout, no sliding window): no pre-norms, RMS norms after attention and
    # after the FFN instead, QK-norm, tied embeddings.
    "exaone4": dict(
        arch="exaone4", seed=5, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=128,
        rope_base=1000000.0, eps=1e-5, pre="exaone4", add_bos=False, tied=True, dtype=np.float32,
        qk_norm=True, post_norm=True, pre_norm=False,
        specials=["[PAD]", "[BOS]", "<|endoftext|>", "[UNK]", "[|system|]", "[|endofturn|]", "[|user|]", "[|assistant|]"],
        bos="[BOS]", eos="[|endofturn|]",
    ),
}


# Mixture-of-experts families (issue 14): the layout of llama.cpp's converter (Qwen3MoeModel,
# GptOssModel in convert_hf_to_gguf.py) at small sizes: 8 experts, 2 used per token.
FAMILIES.update({
    # Qwen 3 MoE (Qwen3-30B-A3B's layout): Qwen 3 attention (QK-norm), `ffn_norm`, then a router
    # `ffn_gate_inp` and experts `ffn_{gate,up,down}_exps` stored as 3-D tensors.
    "qwen3moe": dict(
        arch="qwen3moe", seed=6, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=32, n_ff=192,
        rope_base=1000000.0, eps=1e-6, pre="qwen2", add_bos=False, tied=False, dtype=np.float32,
        qk_norm=True, moe=dict(n_expert=8, n_used=2, n_ff_exp=48),
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos="<|endoftext|>", eos="<|im_end|>",
    ),
    # gpt-oss (gpt-oss-20b's layout): biases on Q/K/V/O, attention sinks, YaRN RoPE, even layers in a
    # 128-token sliding window, the FFN pre-norm named `post_attention_norm`, a router with a
    # bias and experts with biases; the gpt-4o pre-tokenizer; F32 (`gpt-oss-mxfp4`
    # below has the real files' MXFP4 experts); 2 layers: one local, one global.
    "gpt-oss": dict(
        arch="gpt-oss", seed=7, n_embd=64, n_layer=2, n_head=8, n_head_kv=2, head_dim=16, n_ff=64,
        rope_base=150000.0, eps=1e-5, pre="gpt-4o", add_bos=False, tied=False, dtype=np.float32,
        qkv_bias=True, o_bias=True, sinks=True, sliding_window=128, ffn_norm="post_attention_norm",
        moe=dict(n_expert=8, n_used=2, n_ff_exp=64, router_bias=True, expert_bias=True),
        # gpt-oss-20b's YaRN: factor 32 over an original 4096 positions (the converter's keys).
        kv={"rope.scaling.type": "yarn", "rope.scaling.factor": 32.0, "rope.scaling.original_context_length": 4096},
        specials=["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>",
                  "<|end|>", "<|message|>", "<|call|>"],
        bos="<|startoftext|>", eos="<|return|>",
    ),
})


# gpt-oss with a harmony chat template in the shape of gpt-oss's own (the same text as
# crates/engine/tests/template_harmony.rs checks against Jinja2): what the server's harmony tests
# serve (channels as reasoning/content, tool calls addressed `to=functions.NAME`).
# Its own prompt is ~500 tokens of the small vocabulary, hence the longer context.
FAMILIES["gpt-oss-chat"] = dict(FAMILIES["gpt-oss"], n_ctx=2048, chat_template=(Path(__file__).parent / "harmony_template.jinja").read_text())


# Issue 14 (families): RoPE scaling and the new layouts. `kv` entries are written as
# `{arch}.<key>` (float -> f32, int -> u32, str -> string, list of bool -> bool array).
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
FAMILIES.update({
    # Llama 3.1 rope scaling: the converter's per-pair divisors `rope_freqs.weight`.
    "llama3_rope_freqs": dict(
        arch="llama", seed=11, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=160,
        rope_base=500000.0, eps=1e-5, pre="llama-bpe", add_bos=True, tied=False, dtype=np.float32,
        rope_freqs=True, specials=LLAMA3_SPECIALS, bos="<|begin_of_text|>", eos="<|eot_id|>",
    ),
    # YaRN as gpt-oss and Qwen's long-context files carry it: original context 32 positions, factor
    # 16, so the long prompt (~200 tokens) runs far past the trained length.
    "llama_yarn": dict(
        arch="llama", seed=12, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=160,
        rope_base=10000.0, eps=1e-5, pre="llama-bpe", add_bos=True, tied=False, dtype=np.float32,
        specials=LLAMA3_SPECIALS, bos="<|begin_of_text|>", eos="<|eot_id|>",
        kv={"rope.scaling.type": "yarn", "rope.scaling.factor": 16.0, "rope.scaling.original_context_length": 32,
            "rope.scaling.yarn_beta_fast": 32.0, "rope.scaling.yarn_beta_slow": 1.0},
    ),
})

# Issue 14 (families): the new layouts.
FAMILIES.update({
    # Gemma 2: pre- and post-norms, GeGLU, scaled embeddings, tied output, sliding-window layers
    # alternating with global ones (even layers local), attention and final logit soft-capping.
    # The caps are small (2 and 8, the real ones are 50 and 30) so that tanh bends these
    # random-weight scores and logits and a missing cap shows.
    "gemma2": dict(
        arch="gemma2", seed=13, n_embd=64, n_layer=4, n_head=4, n_head_kv=2, head_dim=16, n_ff=128,
        rope_base=10000.0, eps=1e-6, pre="default", add_bos=True, tied=True, dtype=np.float32,
        post_norm=True, specials=["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>", eos="<end_of_turn>",
        kv={"attention.sliding_window": 16, "attn_logit_softcapping": 2.0, "final_logit_softcapping": 8.0},
    ),
    # Phi-3.5 / Phi-4-mini: fused attn_qkv, fused gate+up in one ffn_up of 2 x n_ff rows, partial
    # NeoX RoPE (48 of 64 dims, as Phi-4-mini's 0.75), LongRoPE short/long factors with the
    # converter's attn_factor. Context 512 <= original 4096: llama.cpp uses the short factors.
    "phi3": dict(
        arch="phi3", seed=14, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=160,
        n_rot=12, rope_base=10000.0, eps=1e-5, pre="default", add_bos=False, tied=True, dtype=np.float32,
        fused_qkv=True, fused_up=True, rope_factors_long_short=True,
        # llama.cpp sets strip attributes on these by `general.name` ("phi3") and needs them all.
        specials=["<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        bos="<s>", eos="<|end|>",
        kv={"rope.scaling.attn_factor": 1.19, "rope.scaling.original_context_length": 4096},
    ),
    # The same with original context 32 < 512: llama.cpp switches to the long factors.
    "phi3_long": dict(
        arch="phi3", seed=15, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=160,
        n_rot=12, rope_base=10000.0, eps=1e-5, pre="default", add_bos=False, tied=True, dtype=np.float32,
        fused_qkv=True, fused_up=True, rope_factors_long_short=True,
        # llama.cpp sets strip attributes on these by `general.name` ("phi3") and needs them all.
        specials=["<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        bos="<s>", eos="<|end|>",
        kv={"rope.scaling.attn_factor": 1.19, "rope.scaling.original_context_length": 32},
    ),
    # EXAONE 4.0 32B's layout: 64 layers (llama.cpp keys the sliding window on the layer count),
    # three sliding-window layers (window 16 here, 4096 real) then one global layer without RoPE.
    "exaone4_32b": dict(
        arch="exaone4", seed=16, n_embd=64, n_layer=64, n_head=4, n_head_kv=2, head_dim=16, n_ff=96,
        rope_base=1000000.0, eps=1e-5, pre="exaone4", add_bos=False, tied=True, dtype=np.float32,
        qk_norm=True, post_norm=True, pre_norm=False,
        specials=["[PAD]", "[BOS]", "<|endoftext|>", "[UNK]", "[|system|]", "[|endofturn|]", "[|user|]", "[|assistant|]"],
        bos="[BOS]", eos="[|endofturn|]",
        kv={"attention.sliding_window": 16, "attention.sliding_window_pattern": 4},
    ),
    # Mistral Nemo / Ministral: arch llama with the Tekken pre-tokenizer.
    "mistral_tekken": dict(
        arch="llama", seed=17, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=160,
        rope_base=1000000.0, eps=1e-5, pre="tekken", add_bos=True, tied=False, dtype=np.float32,
        specials=["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], bos="<s>", eos="</s>",
    ),
    # Ministral 3 (`mistral3`, text only): llama with YaRN and attention temperature tuning, whose
    # steps llama.cpp takes every original_context_length (32) positions, so the ~200-token prompt
    # crosses several.
    "mistral3": dict(
        arch="mistral3", seed=18, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=160,
        rope_base=1000000.0, eps=1e-5, pre="tekken", add_bos=True, tied=False, dtype=np.float32,
        specials=["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], bos="<s>", eos="</s>",
        kv={"rope.scaling.type": "yarn", "rope.scaling.factor": 16.0, "rope.scaling.original_context_length": 32,
            "rope.scaling.yarn_beta_fast": 32.0, "rope.scaling.yarn_beta_slow": 1.0,
            "attention.temperature_scale": 0.1, "attention.temperature_length": 16},
    ),
})


# gpt-oss with its experts in MXFP4 as the real files have them (gguf-py's quantizer).
FAMILIES["gpt-oss-mxfp4"] = dict(FAMILIES["gpt-oss"], mxfp4=("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"))


def write_moe_metadata(w, cfg):
    """The MoE keys llama.cpp reads (`{arch}.expert_count`, ...) and gpt-oss's sliding window."""
    arch, moe = cfg["arch"], cfg.get("moe")
    if moe:
        w.add_uint32(f"{arch}.expert_count", moe["n_expert"])
        w.add_uint32(f"{arch}.expert_used_count", moe["n_used"])
        w.add_uint32(f"{arch}.expert_feed_forward_length", moe["n_ff_exp"])
    if cfg.get("sliding_window"):
        w.add_uint32(f"{arch}.attention.sliding_window", cfg["sliding_window"])


def write_moe_layer(w, cfg, b, mat, norm, vec):
    """One layer's router and experts (numpy shape (n_expert, rows, cols) = GGUF [cols, rows, n_expert])."""
    moe, e = cfg["moe"], cfg["n_embd"]
    nx, ff = moe["n_expert"], moe["n_ff_exp"]
    w.add_tensor(b + "ffn_gate_inp.weight", mat(nx, e, np.float32))
    if moe.get("router_bias"):
        w.add_tensor(b + "ffn_gate_inp.bias", vec(nx, 0.5))
    w.add_tensor(b + "ffn_gate_exps.weight", np.stack([mat(ff, e) for _ in range(nx)]))
    w.add_tensor(b + "ffn_up_exps.weight", np.stack([mat(ff, e) for _ in range(nx)]))
    w.add_tensor(b + "ffn_down_exps.weight", np.stack([mat(e, ff) for _ in range(nx)]))
    if moe.get("expert_bias"):
        w.add_tensor(b + "ffn_gate_exps.bias", np.stack([vec(ff, 0.3) for _ in range(nx)]))
        w.add_tensor(b + "ffn_up_exps.bias", np.stack([vec(ff, 0.3) for _ in range(nx)]))
        w.add_tensor(b + "ffn_down_exps.bias", np.stack([vec(e, 0.3) for _ in range(nx)]))


def write_kv(w, arch, kv):
    """Writes the family's extra metadata (`kv` in FAMILIES)."""
    for key, val in kv.items():
        full = f"{arch}.{key}"
        if isinstance(val, bool):
            w.add_bool(full, val)
        elif isinstance(val, float):
            w.add_float32(full, val)
        elif isinstance(val, int):
            w.add_uint32(full, val)
        elif isinstance(val, str):
            w.add_string(full, val)
        elif isinstance(val, list):
            w.add_array(full, val)
        else:
            raise TypeError(f"{full}: {val!r}")


# ---------------------------------------------------------------------------------------------
# Quant types: llama files whose matrices are in the k-quant / i-quant / mxfp4 types daehwa reads
# but does not write. n_embd and n_ff are multiples of 256 (the super-block), so every matrix can
# take the 256-element types. The mixes are llama.cpp's own: the F32 file is written as above and
# then quantized by llama.cpp's `llama_model_quantize` (llama-cpp-python 0.3.36) with the file
# type's rules (Q3_K_M: q3_K with q4_K/q5_K attn_v, ffn_down and q6_K output; Q2_K; IQ4_XS;
# IQ4_NL), without an importance matrix. mxfp4 only appears in gpt-oss's experts in real files and
# llama.cpp's quantizer puts it nowhere else, so that file gets mxfp4 FFN matrices written here by
# gguf-py's quantizer (llama.cpp multiplies mxfp4 in any matrix).
# ---------------------------------------------------------------------------------------------

def _quant_llama(seed, **kw):
    cfg = dict(FAMILIES["llama"], seed=seed, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, head_dim=64, n_ff=512)
    cfg.update(kw)
    return cfg


FAMILIES.update({
    "llama-q3_k_m": _quant_llama(11, ftype="LLAMA_FTYPE_MOSTLY_Q3_K_M"),
    "llama-q2_k": _quant_llama(12, ftype="LLAMA_FTYPE_MOSTLY_Q2_K"),
    "llama-iq4_xs": _quant_llama(13, ftype="LLAMA_FTYPE_MOSTLY_IQ4_XS"),
    "llama-iq4_nl": _quant_llama(14, ftype="LLAMA_FTYPE_MOSTLY_IQ4_NL"),
    "llama-mxfp4": _quant_llama(15, mxfp4=("ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")),
})


class _QuantizingWriter:
    """A GGUFWriter whose add_tensor stores the named matrices as mxfp4 (gguf-py's quantizer)."""

    def __init__(self, writer, suffixes):
        self._w, self._suffixes = writer, tuple(suffixes or ())

    def add_tensor(self, name, tensor, *args, **kwargs):
        if self._suffixes and name.endswith(self._suffixes):
            q = gguf.quants.quantize(tensor.astype(np.float32), gguf.GGMLQuantizationType.MXFP4)
            return self._w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.MXFP4)
        return self._w.add_tensor(name, tensor, *args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._w, attr)


def quantize_with_llama_cpp(path, ftype_name):
    """Rewrites `path` (an F32 GGUF) as llama.cpp's `ftype_name` mix, in place."""
    try:
        import ctypes
        import llama_cpp
    except ImportError as err:
        sys.exit(f"scripts/tiny_models.py needs llama-cpp-python for the quantized files ({err}): see .ci/run")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = 2
    tmp = path.with_suffix(f".gguf.{os.getpid()}.q.tmp")
    rc = llama_cpp.llama_model_quantize(str(path).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize {ftype_name} failed on {path}: {rc}")
    os.replace(tmp, path)


def write_family(name, out_dir):
    cfg = FAMILIES[name]
    arch = cfg["arch"]
    rng = np.random.default_rng(cfg["seed"])
    tokens, types, merges = vocabulary(cfg["specials"])
    n_vocab = len(tokens)
    e, hd, ff = cfg["n_embd"], cfg["head_dim"], cfg["n_ff"]
    qd, kvd = cfg["n_head"] * hd, cfg["n_head_kv"] * hd
    dt = cfg["dtype"]

    def mat(rows, cols, dtype=dt):
        # Std 1/sqrt(fan_in): unit-variance inputs give unit-variance outputs.
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(dtype)

    def norm(n):
        # Around 1, but not 1, so a missing or misplaced norm changes the logits.
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    def vec(n, scale):
        return (scale * rng.standard_normal(n)).astype(np.float32)

    path = Path(out_dir) / f"{name}.gguf"
    # Written under a temporary name and renamed, so a concurrent run never reads half a file.
    tmp = path.with_suffix(f".gguf.{os.getpid()}.tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w = _QuantizingWriter(w, cfg.get("mxfp4")) if cfg.get("mxfp4") else w
    w.add_name(f"tiny-{name}")
    w.add_uint32(f"{arch}.context_length", cfg.get("n_ctx", 512))
    w.add_uint32(f"{arch}.embedding_length", e)
    w.add_uint32(f"{arch}.block_count", cfg["n_layer"])
    w.add_uint32(f"{arch}.feed_forward_length", ff)
    w.add_uint32(f"{arch}.attention.head_count", cfg["n_head"])
    w.add_uint32(f"{arch}.attention.head_count_kv", cfg["n_head_kv"])
    w.add_uint32(f"{arch}.attention.key_length", hd)
    w.add_uint32(f"{arch}.attention.value_length", hd)
    w.add_uint32(f"{arch}.rope.dimension_count", cfg.get("n_rot", hd))
    w.add_float32(f"{arch}.rope.freq_base", cfg["rope_base"])
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg["eps"])
    w.add_uint32(f"{arch}.vocab_size", n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dt == np.float16 else gguf.LlamaFileType.ALL_F32)
    write_moe_metadata(w, cfg)
    write_kv(w, arch, cfg.get("kv", {}))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(cfg["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index(cfg["bos"]))
    w.add_eos_token_id(tokens.index(cfg["eos"]))
    w.add_add_bos_token(cfg["add_bos"])
    w.add_add_eos_token(False)
    if cfg.get("chat_template"):
        w.add_chat_template(cfg["chat_template"])

    # The embedding table doubles as the output matrix when tied: keep its logits O(few units).
    w.add_tensor("token_embd.weight", (0.5 * rng.standard_normal((n_vocab, e))).astype(dt))
    if cfg.get("rope_freqs"):
        # Llama-3-style factors: 1 for high frequencies, growing towards the low ones.
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, hd // 2).astype(np.float32))
    if cfg.get("rope_factors_long_short"):
        # Phi-3 LongRoPE: short factors near 1, long ones growing (as the converter writes them).
        n2 = cfg.get("n_rot", hd) // 2
        w.add_tensor("rope_factors_short.weight", np.linspace(1.0, 1.5, n2).astype(np.float32))
        w.add_tensor("rope_factors_long.weight", np.linspace(1.0, 12.0, n2).astype(np.float32))
    for il in range(cfg["n_layer"]):
        b = f"blk.{il}."
        if cfg.get("pre_norm", True):
            w.add_tensor(b + "attn_norm.weight", norm(e))
        if cfg.get("fused_qkv"):
            w.add_tensor(b + "attn_qkv.weight", np.concatenate([mat(qd, e), mat(kvd, e), mat(kvd, e)]))
        else:
            w.add_tensor(b + "attn_q.weight", mat(qd, e))
            w.add_tensor(b + "attn_k.weight", mat(kvd, e))
            w.add_tensor(b + "attn_v.weight", mat(kvd, e))
        if cfg.get("qkv_bias"):
            w.add_tensor(b + "attn_q.bias", vec(qd, 0.3))
            w.add_tensor(b + "attn_k.bias", vec(kvd, 0.3))
            w.add_tensor(b + "attn_v.bias", vec(kvd, 0.3))
        if cfg.get("qk_norm"):
            w.add_tensor(b + "attn_q_norm.weight", norm(hd))
            w.add_tensor(b + "attn_k_norm.weight", norm(hd))
        w.add_tensor(b + "attn_output.weight", mat(e, qd))
        if cfg.get("o_bias"):
            w.add_tensor(b + "attn_output.bias", vec(e, 0.3))
        if cfg.get("sinks"):
            w.add_tensor(b + "attn_sinks.weight", vec(cfg["n_head"], 1.0))
        if cfg.get("post_norm"):
            w.add_tensor(b + "post_attention_norm.weight", norm(e))
        if cfg.get("pre_norm", True):
            w.add_tensor(b + cfg.get("ffn_norm", "ffn_norm") + ".weight", norm(e))
        if cfg.get("moe"):
            write_moe_layer(w, cfg, b, mat, norm, vec)
        elif cfg.get("fused_up"):
            w.add_tensor(b + "ffn_up.weight", np.concatenate([mat(ff, e), mat(ff, e)]))
            w.add_tensor(b + "ffn_down.weight", mat(e, ff))
        else:
            w.add_tensor(b + "ffn_gate.weight", mat(ff, e))
            w.add_tensor(b + "ffn_up.weight", mat(ff, e))
            w.add_tensor(b + "ffn_down.weight", mat(e, ff))
        if cfg.get("post_norm"):
            w.add_tensor(b + "post_ffw_norm.weight", norm(e))
    w.add_tensor("output_norm.weight", norm(e))
    if not cfg["tied"]:
        w.add_tensor("output.weight", mat(n_vocab, e))
    if cfg.get("output_bias"):
        w.add_tensor("output.bias", vec(n_vocab, 0.5))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    if cfg.get("ftype"):
        quantize_with_llama_cpp(path, cfg["ftype"])
    return {"family": name, "arch": arch, "path": str(path), "n_vocab": n_vocab, "pre": cfg["pre"]}


def write_split(name, out_dir, n_parts=3):
    """Writes OUT_DIR/<family>-split-0000K-of-0000N.gguf: the family's model (the same bytes of weights as
    write_family's) split into `n_parts` files in llama.cpp's gguf-split layout, as gguf-py's own
    `GGUFWriter(split_max_tensors=...)` writes it: every part is a GGUF of its own with `split.no` (u16,
    from 0), `split.count` (u16) and `split.tensors.count` (i32); the first part holds all the model's
    metadata and the first tensors, the others only the split keys and their tensors, each part's data
    offsets relative to its own data section."""
    single = write_family(name, out_dir)
    reader = gguf.GGUFReader(single["path"])
    out_dir = Path(out_dir)
    tmp_dir = out_dir / f".split-{name}-{os.getpid()}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    base = tmp_dir / f"{name}-split.gguf"
    w = gguf.GGUFWriter(str(base), single["arch"])
    for field in reader.fields.values():
        key = field.name
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                val = [field.parts[i].tolist()[0] for i in field.data]
            w.add_key_value(key, val, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_key_value(key, bytes(field.parts[field.data[0]]).decode("utf-8"), vtype)
        else:
            w.add_key_value(key, field.parts[field.data[0]].tolist()[0], vtype)
    tensors = list(reader.tensors)
    for t in tensors:
        # GGUFReader gives the data in numpy order (rows, cols); written back with the same raw type.
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    # Exactly `n_parts` parts of (nearly) equal tensor counts, the grouping gguf-split's
    # --split-max-tensors makes.
    per = -(-len(tensors) // n_parts)
    items = list(w.tensors[0].items())
    w.tensors = [dict(items[i * per:(i + 1) * per]) for i in range(n_parts)]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    paths = []
    for i in range(n_parts):
        part = f"{name}-split-{i + 1:05d}-of-{n_parts:05d}.gguf"
        os.replace(tmp_dir / part, out_dir / part)
        paths.append(str(out_dir / part))
    tmp_dir.rmdir()
    return {"family": name, "arch": single["arch"], "path": single["path"], "parts": paths}


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    names = argv[2:] or list(FAMILIES)
    if names[0] == "--split":
        # scripts/tiny_models.py OUT_DIR --split FAMILY: the family and its 3-part split twin.
        print(json.dumps(write_split(names[1], out_dir)), flush=True)
        return
    for name in names:
        if name not in FAMILIES:
            sys.exit(f"unknown family {name!r} (known: {', '.join(FAMILIES)})")
        print(json.dumps(write_family(name, out_dir)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
