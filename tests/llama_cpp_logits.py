#!/usr/bin/env python3
"""llama.cpp's side of `crates/engine/tests/families_vs_llama_cpp.rs`, through llama-cpp-python.

Reads one JSON request on stdin:
    {"model": PATH, "n_ctx": 512, "flash_attn": true, "threads": 2,
     "prompts": ["text", ...],                          # scored with logits at every position
     "tokenize": ["text", ...]}                         # tokenized with every flag combination
and prints one JSON object on stdout:
    {"prompts": [{"text": T, "ids": [...], "logits": [[n_vocab floats] per position]}, ...],
     "tokenize": [{"text": T, "add_special": b, "parse_special": b, "ids": [...]}, ...]}

Prompts are tokenized by llama.cpp (add_special=True, parse_special=True) and the logits are those of
`Llama.eval` with `logits_all=True` on a fresh cache, one prompt at a time. Exits with status 3 and a
message on stderr when llama_cpp cannot be imported (the Rust test turns that into a failure that
says how to install it).
"""

import json
import sys

try:
    import llama_cpp
except ImportError as err:  # the Rust test prints this with the install command
    print(f"cannot import llama_cpp ({err})", file=sys.stderr)
    sys.exit(3)


def main():
    req = json.load(sys.stdin)
    llm = llama_cpp.Llama(
        model_path=req["model"],
        n_ctx=req.get("n_ctx", 512),
        n_batch=req.get("n_ctx", 512),
        n_threads=req.get("threads", 2),
        n_threads_batch=req.get("threads", 2),
        logits_all=True,
        flash_attn=req.get("flash_attn", True),
        seed=0,
        verbose=False,
    )
    out = {"llama_cpp_version": llama_cpp.__version__, "prompts": [], "tokenize": []}
    for text in req.get("prompts", []):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        scores = llm.scores[: len(ids), :]
        out["prompts"].append({"text": text, "ids": ids, "logits": [[float(x) for x in row] for row in scores]})
    for text in req.get("tokenize", []):
        for add_special in (False, True):
            for parse_special in (False, True):
                ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
                out["tokenize"].append(
                    {"text": text, "add_special": add_special, "parse_special": parse_special, "ids": ids}
                )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
