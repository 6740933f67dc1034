#!/usr/bin/env python3
"""Provenance-mark measurements (README "Provenance"): detection rate of the watermark on 200-token
answers at temperature 0.7 from the real default model, at the z threshold that gives a 1% false-positive
rate on human Korean and English text; the perplexity cost (marked vs unmarked answers scored by
llama-cpp-python under the same model, without the bias); robustness to 10% random word
substitutions.

    bench/watermark/run [N_ANSWERS]      (default 60 marked + 60 unmarked)

Human text (fetched once into ~/.cache/daehwa-bench/watermark, nothing from the internet but the
registry): Korean from the PyPI package konlpy 0.6.0 (kolaw/constitution.txt, the Constitution of the
Republic of Korea, and kobill/*.txt, National Assembly bills: official works, not protected under
article 7 of the Korean Copyright Act); English from the Python standard library's pydoc_data/topics.py
(the Python Language Reference, PSF licence) and /usr/share/common-licenses/GPL-3 (verbatim copying
permitted).
"""
import concurrent.futures as cf
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.expanduser("~/.cache/daehwa-bench/watermark")
MODEL = os.environ.get("DAEHWA_BENCH_MODEL", os.path.expanduser("~/.local/share/daehwa/models/smollm2.gguf"))
BIN = os.environ.get("DAEHWA_BIN", os.path.join(ROOT, "target/debug/daehwa"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 60
TOKENS = 200

TOPICS = ["the history of Seoul", "how bread rises", "why the sky is blue", "the water cycle", "learning a second language",
          "the invention of the printing press", "how vaccines work", "the life of bees", "saving money", "the Moon landing",
          "how to start running", "the rules of chess", "climate and farming", "the first computers", "volcanoes",
          "the Silk Road", "sleep and memory", "recycling plastic", "how trains changed cities", "the ocean's tides"]
STYLES = ["Write a short essay about {}.", "Explain {} to a curious student.", "Tell me about {}."]


def human_texts():
    os.makedirs(CACHE, exist_ok=True)
    whl = os.path.join(CACHE, "konlpy-0.6.0-py2.py3-none-any.whl")
    if not os.path.exists(whl):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "konlpy==0.6.0", "-d", CACHE, "-q"], check=True)
    ko = []
    with zipfile.ZipFile(whl) as z:
        for n in sorted(z.namelist()):
            if n.startswith("konlpy/data/corpus/kolaw/") or n.startswith("konlpy/data/corpus/kobill/"):
                ko.append(z.read(n).decode("utf-8"))
    import pydoc_data.topics as t
    en = list(t.topics.values())
    gpl = "/usr/share/common-licenses/GPL-3"
    if os.path.exists(gpl):
        en.append(open(gpl, encoding="utf-8").read())
    return ko, en


def chunks(llm, texts, n_tok):
    """Consecutive n_tok-token pieces of each text (whitespace normalised), as text."""
    out = []
    for t in texts:
        t = re.sub(r"\s+", " ", t).strip()
        ids = llm.tokenize(t.encode(), add_bos=False, special=False)
        for i in range(0, len(ids) - n_tok + 1, n_tok):
            out.append(llm.detokenize(ids[i:i + n_tok]).decode("utf-8", "ignore"))
    return out


def post(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def serve(key):
    args = [BIN, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", "0", "--max-seqs", "8"]
    if key:
        args += ["--watermark-key-file", key]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAEHWA_")}
    env["DAEHWA_DATA_DIR"] = tempfile.mkdtemp(prefix="wm-bench-")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    url = p.stdout.readline().strip()
    return p, url[: -len("/v1")]


def generate(url, prompts, seed0):
    def one(i):
        r = post(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompts[i]}], "temperature": 0.7,
                                                "max_tokens": TOKENS, "ignore_eos": True, "seed": seed0 + i})
        return r["choices"][0]["message"]["content"]
    with cf.ThreadPoolExecutor(8) as ex:
        return list(ex.map(one, range(len(prompts))))


def perplexity(llm, prompt, answer):
    """Perplexity of the answer's tokens after the chat-formatted prompt, under the plain model."""
    head = f"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    p = llm.tokenize(head.encode(), add_bos=False, special=True)
    a = llm.tokenize(answer.encode(), add_bos=False, special=False)
    llm.reset()
    llm.eval(p + a)
    import numpy as np
    rows = np.asarray(llm.scores[len(p) - 1: len(p) + len(a) - 1], dtype=np.float64)
    m = rows.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(rows - m).sum(axis=1, keepdims=True)))[:, 0]
    nll = float((lse - rows[np.arange(len(a)), a]).sum())
    return math.exp(nll / len(a))


def substitute(text, frac, vocab, rng):
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, int(len(words) * frac))):
        words[i] = rng.choice(vocab)
    return " ".join(words)


def main():
    from llama_cpp import Llama
    llm = Llama(model_path=MODEL, n_ctx=1024, logits_all=True, verbose=False)
    ko, en = human_texts()
    h_ko, h_en = chunks(llm, ko, TOKENS), chunks(llm, en, TOKENS)
    key = os.path.join(CACHE, "bench.key")
    with open(key, "w") as f:
        f.write("daehwa-watermark-bench-key-0001\n")
    prompts = [STYLES[i % len(STYLES)].format(TOPICS[(i // len(STYLES)) % len(TOPICS)]) for i in range(N)]

    marked_srv, murl = serve(key)
    plain_srv, purl = serve(None)
    try:
        marked = generate(murl, prompts, 1000)
        plain = generate(purl, prompts, 1000)

        def z(texts):
            def one(t):
                return post(murl, "/v1/provenance/detect", {"text": t})["z"]
            with cf.ThreadPoolExecutor(4) as ex:
                return list(ex.map(one, texts))
        z_ko, z_en, z_m, z_p = z(h_ko), z(h_en), z(marked), z(plain)
        rng = random.Random(7)
        vocab = [w for t in en for w in t.split() if w.isalpha()][:20000]
        z_sub = z([substitute(t, 0.10, vocab, rng) for t in marked])
    finally:
        marked_srv.kill()
        plain_srv.kill()
    with open(os.path.join(CACHE, "z-scores.json"), "w") as f:
        json.dump({"ko": z_ko, "en": z_en, "marked": z_m, "unmarked": z_p, "subst10": z_sub}, f)
    human = sorted(z_ko + z_en)
    # The smallest threshold with at most 1% of human texts at or above it.
    k = int(math.floor(0.01 * len(human)))
    thr = human[len(human) - k - 1] + 1e-9 if k < len(human) else human[-1]
    thr = max(thr, human[-(k + 1)] + 1e-9)
    rate = lambda zs, t: sum(1 for x in zs if x >= t) / len(zs)
    ppl_m = [perplexity(llm, p, a) for p, a in zip(prompts, marked)]
    ppl_p = [perplexity(llm, p, a) for p, a in zip(prompts, plain)]
    res = {
        "answers": N, "tokens": TOKENS, "human_ko_chunks": len(h_ko), "human_en_chunks": len(h_en),
        "threshold_fpr1": round(thr, 3),
        "human_fpr_at_threshold": round(rate(human, thr), 4),
        "human_fpr_at_4": round(rate(human, 4.0), 4),
        "human_z_max": round(human[-1], 2),
        "detect_rate_at_threshold": round(rate(z_m, thr), 3),
        "detect_rate_at_4": round(rate(z_m, 4.0), 3),
        "unmarked_flagged_at_threshold": round(rate(z_p, thr), 3),
        "subst10_detect_rate_at_threshold": round(rate(z_sub, thr), 3),
        "subst10_detect_rate_at_4": round(rate(z_sub, 4.0), 3),
        "z_marked_median": round(statistics.median(z_m), 2),
        "z_unmarked_median": round(statistics.median(z_p), 2),
        "z_subst10_median": round(statistics.median(z_sub), 2),
        "ppl_marked_median": round(statistics.median(ppl_m), 2),
        "ppl_unmarked_median": round(statistics.median(ppl_p), 2),
        "ppl_marked_mean": round(statistics.mean(ppl_m), 2),
        "ppl_unmarked_mean": round(statistics.mean(ppl_p), 2),
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
