#!/usr/bin/env python3
"""Writes a random-weight mixture-of-experts GGUF for `bench/compare` (issue 14 item 5).

Qwen3-30B-A3B's real per-layer shapes (n_embd 2048, 32 query / 4 KV heads of 128, QK-norm,
128 experts of width 768, 8 used per token, a 151936-token vocabulary) with fewer layers
(default 6 of 48), so the file is a few GB and fits a 24 GiB machine with room; the experts and
attention in Q4_0, the router and norms in F32, the embeddings and output in Q8_0. What a decode
step reads per layer (attention + the router + 8 of 128 experts) is exactly the real model's, so
generation speed per layer compares like for like; prompt processing with 512 tokens touches
nearly every expert, as in the real model.

`--ftype q4_k_m` then requantizes that file with llama.cpp's own `llama_model_quantize`
(llama-cpp-python 0.3.36, `allow_requantize`) to the Q4_K_M mix that published Qwen3-30B-A3B
GGUFs use: Q4_K experts and attention, Q6_K for `ffn_down_exps` and `attn_v` in the layers
llama.cpp's `use_more_bits` picks and for `output`, Q4_K embeddings (about 2 minutes on 2 cores).

Usage: bench/moe_model.py OUT.gguf [--layers N] [--seed S] [--ftype q4_0|q4_k_m]
Requires the `gguf` package (gguf==0.19.0) and numpy (and llama-cpp-python for q4_k_m).
Deterministic for a given seed.
Then: bench/compare --model OUT.gguf --threads 2 --pairs 3
"""

import argparse
import os
import sys
from pathlib import Path

try:
    import gguf
    import numpy as np
except ImportError as err:
    sys.exit(f"bench/moe_model.py needs the `gguf` package ({err}): python3 -m pip install gguf==0.19.0")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import tiny_models  # noqa: E402  (its byte-level BPE vocabulary)

ARCH = "qwen3moe"
N_EMBD, N_HEAD, N_HEAD_KV, HEAD_DIM = 2048, 32, 4, 128
N_EXPERT, N_USED, N_FF_EXP, N_FF = 128, 8, 768, 6144
N_VOCAB = 151936


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=30)
    ap.add_argument("--ftype", choices=["q4_0", "q4_k_m"], default="q4_0")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)

    def mat(rows, cols, qtype):
        x = (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float32)
        return gguf.quants.quantize(x, qtype), qtype

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens, types, merges = tiny_models.vocabulary(specials)
    # Pad to Qwen's vocabulary size (the output matrix is a large part of a decode step).
    pad = N_VOCAB - len(tokens)
    tokens = tokens[: -len(specials)] + [f"<|pad_{i}|>" for i in range(pad)] + tokens[-len(specials):]
    types = types[: -len(specials)] + [gguf.TokenType.UNUSED] * pad + types[-len(specials):]

    out = Path(a.out)
    tmp = out.with_suffix(f".gguf.{os.getpid()}.tmp")
    w = gguf.GGUFWriter(str(tmp), ARCH)
    w.add_name("bench-qwen3moe-30b-a3b-shapes")
    w.add_uint32(f"{ARCH}.context_length", 4096)
    w.add_uint32(f"{ARCH}.embedding_length", N_EMBD)
    w.add_uint32(f"{ARCH}.block_count", a.layers)
    w.add_uint32(f"{ARCH}.feed_forward_length", N_FF)
    w.add_uint32(f"{ARCH}.attention.head_count", N_HEAD)
    w.add_uint32(f"{ARCH}.attention.head_count_kv", N_HEAD_KV)
    w.add_uint32(f"{ARCH}.attention.key_length", HEAD_DIM)
    w.add_uint32(f"{ARCH}.attention.value_length", HEAD_DIM)
    w.add_float32(f"{ARCH}.rope.freq_base", 1000000.0)
    w.add_float32(f"{ARCH}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_uint32(f"{ARCH}.expert_count", N_EXPERT)
    w.add_uint32(f"{ARCH}.expert_used_count", N_USED)
    w.add_uint32(f"{ARCH}.expert_feed_forward_length", N_FF_EXP)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)

    q4, q8 = gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q8_0

    def add(name, pair):
        data, qtype = pair
        w.add_tensor(name, data, raw_dtype=qtype)

    def experts(rows, cols):
        parts = [mat(rows, cols, q4)[0] for _ in range(N_EXPERT)]
        return np.stack(parts), q4

    add("token_embd.weight", mat(N_VOCAB, N_EMBD, q8))
    for il in range(a.layers):
        b = f"blk.{il}."
        w.add_tensor(b + "attn_norm.weight", norm(N_EMBD))
        add(b + "attn_q.weight", mat(N_HEAD * HEAD_DIM, N_EMBD, q4))
        add(b + "attn_k.weight", mat(N_HEAD_KV * HEAD_DIM, N_EMBD, q4))
        add(b + "attn_v.weight", mat(N_HEAD_KV * HEAD_DIM, N_EMBD, q4))
        w.add_tensor(b + "attn_q_norm.weight", norm(HEAD_DIM))
        w.add_tensor(b + "attn_k_norm.weight", norm(HEAD_DIM))
        add(b + "attn_output.weight", mat(N_EMBD, N_HEAD * HEAD_DIM, q4))
        w.add_tensor(b + "ffn_norm.weight", norm(N_EMBD))
        router = rng.standard_normal((N_EXPERT, N_EMBD), dtype=np.float32) / np.float32(np.sqrt(N_EMBD))
        w.add_tensor(b + "ffn_gate_inp.weight", router.astype(np.float32))
        add(b + "ffn_gate_exps.weight", experts(N_FF_EXP, N_EMBD))
        add(b + "ffn_up_exps.weight", experts(N_FF_EXP, N_EMBD))
        add(b + "ffn_down_exps.weight", experts(N_EMBD, N_FF_EXP))
        print(f"layer {il + 1}/{a.layers}", file=sys.stderr, flush=True)
    w.add_tensor("output_norm.weight", norm(N_EMBD))
    add("output.weight", mat(N_VOCAB, N_EMBD, q8))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if a.ftype == "q4_k_m":
        requantize(tmp, out)
        tmp.unlink()
    else:
        os.replace(tmp, out)
    print(out)


def requantize(src, out):
    """Writes `src` (this script's Q4_0 file) as llama.cpp's Q4_K_M mix into `out`."""
    try:
        import ctypes
        import llama_cpp
    except ImportError as err:
        sys.exit(f"bench/moe_model.py --ftype q4_k_m needs llama-cpp-python ({err}): python3 -m pip install llama-cpp-python==0.3.36")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = os.cpu_count() or 2
    params.allow_requantize = True
    tmp = out.with_suffix(f".gguf.{os.getpid()}.q.tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize Q4_K_M failed on {src}: {rc}")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
