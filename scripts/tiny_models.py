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
    w.add_name(f"tiny-{name}")
    w.add_uint32(f"{arch}.context_length", 512)
    w.add_uint32(f"{arch}.embedding_length", e)
    w.add_uint32(f"{arch}.block_count", cfg["n_layer"])
    w.add_uint32(f"{arch}.feed_forward_length", ff)
    w.add_uint32(f"{arch}.attention.head_count", cfg["n_head"])
    w.add_uint32(f"{arch}.attention.head_count_kv", cfg["n_head_kv"])
    w.add_uint32(f"{arch}.attention.key_length", hd)
    w.add_uint32(f"{arch}.attention.value_length", hd)
    w.add_uint32(f"{arch}.rope.dimension_count", hd)
    w.add_float32(f"{arch}.rope.freq_base", cfg["rope_base"])
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg["eps"])
    w.add_uint32(f"{arch}.vocab_size", n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dt == np.float16 else gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(cfg["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index(cfg["bos"]))
    w.add_eos_token_id(tokens.index(cfg["eos"]))
    w.add_add_bos_token(cfg["add_bos"])
    w.add_add_eos_token(False)

    # The embedding table doubles as the output matrix when tied: keep its logits O(few units).
    w.add_tensor("token_embd.weight", (0.5 * rng.standard_normal((n_vocab, e))).astype(dt))
    if cfg.get("rope_freqs"):
        # Llama-3-style factors: 1 for high frequencies, growing towards the low ones.
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, hd // 2).astype(np.float32))
    for il in range(cfg["n_layer"]):
        b = f"blk.{il}."
        if cfg.get("pre_norm", True):
            w.add_tensor(b + "attn_norm.weight", norm(e))
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
        if cfg.get("post_norm"):
            w.add_tensor(b + "post_attention_norm.weight", norm(e))
        if cfg.get("pre_norm", True):
            w.add_tensor(b + "ffn_norm.weight", norm(e))
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
