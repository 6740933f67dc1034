#!/usr/bin/env bash
# Tests bench/compare: its llama.cpp half for real (the cached llama-bench on the real SmolLM2
# model), its daehwa half through bench/testdata/fake-daehwa (DAEHWA_BIN), whose figures are known,
# so the medians, ratios, JSON and table can be checked exactly. Builds llama.cpp first if needed.
# Prints "N passed, N failed" and exits non-zero on any failure.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

model="${DAEHWA_SMOLLM2_GGUF:-}"
if [[ -z "$model" ]]; then
    if [[ -n "${DAEHWA_MODELS_DIR:-}" ]]; then model="$DAEHWA_MODELS_DIR/smollm2.gguf"
    else model="${XDG_DATA_HOME:-$HOME/.local/share}/daehwa/models/smollm2.gguf"; fi
fi
if [[ ! -f "$model" ]]; then
    echo "FAIL: real model not found at $model: run \`cargo run --release -- pull smollm2\`" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

passed=0; failed=0
ok()   { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. A full run: two thread counts, three pairs, fake daehwa resolved by name via `list --json`.
export FAKE_DAEHWA_MODEL="$model" FAKE_DAEHWA_STATE="$tmp/state"
if DAEHWA_BIN="$HERE/testdata/fake-daehwa" "$HERE/compare" --model smollm2 --threads 1,2 --pairs 3 \
        -p 64 -n 16 --batch 0 --json "$tmp/out.json" >"$tmp/stdout" 2>"$tmp/stderr"; then
    ok "compare ran with the fake daehwa and the real llama-bench"
else
    fail "compare exited non-zero:"; tail -20 "$tmp/stderr"
fi

if python3 - "$tmp/out.json" "$tmp/stdout" "$tmp/stderr" "$model" <<'PY'
import json, sys, os
doc = json.load(open(sys.argv[1])); table = open(sys.argv[2]).read(); err = open(sys.argv[3]).read()
model = sys.argv[4]
rows = {(r["threads"], r["test"]): r for r in doc["rows"]}
assert set(rows) == {(1, "pp64"), (1, "tg16"), (2, "pp64"), (2, "tg16")}, rows.keys()
# fake-daehwa: call k gives pp = 100*T + 10k, tg = 10*T + k; calls 0..2 at T=1, 3..5 at T=2.
want = {(1, "pp64"): [100, 110, 120], (1, "tg16"): [10, 11, 12],
        (2, "pp64"): [230, 240, 250], (2, "tg16"): [23, 24, 25]}
for key, r in rows.items():
    assert r["daehwa_runs"] == want[key], (key, r["daehwa_runs"])
    assert r["daehwa_median_ts"] == sorted(want[key])[1], (key, r)
    l = r["llama_cpp_runs"]
    assert len(l) == 3 and all(x > 0 for x in l), (key, l)
    assert r["llama_cpp_median_ts"] == sorted(l)[1], (key, r)
    assert abs(r["ratio"] - r["daehwa_median_ts"] / r["llama_cpp_median_ts"]) < 1e-12, r
    assert f"| smollm2 | {key[0]} | {key[1]} |" in table, (key, table)
# Real llama.cpp on a 135M model: batched prompt processing beats one-token-at-a-time decoding.
for t in (1, 2):
    assert rows[(t, "pp64")]["llama_cpp_median_ts"] > rows[(t, "tg16")]["llama_cpp_median_ts"], rows
assert os.path.samefile(doc["model_path"], model), doc["model_path"]
assert doc["pairs"] == 3 and doc["llama_bench_reps"] == 1 and doc["n_prompt"] == 64 and doc["n_gen"] == 16
assert doc["llama_cpp"].get("model_n_params", 0) > 100_000_000, doc["llama_cpp"]
bw = doc["membw_gb_per_s"]
assert bw and all(v > 0.1 for v in bw.values()), bw
# The bandwidth is probed once in every pair; the reported figure is their median, and the
# efficiency is the median of each pair's tokens/s x 100 MB (fake-daehwa's bytes) over its probe.
import statistics
for t in ("1", "2"):
    probes = doc["membw_runs"][t]
    assert len(probes) == 3 and bw[t] == statistics.median(probes), (t, probes, bw)
    r = rows[(int(t), "tg16")]
    per = [0.1 * ts / g for ts, g in zip(want[(int(t), "tg16")], probes)]
    eff = r["bandwidth_efficiency"]
    assert all(abs(a - b) < 1e-9 for a, b in zip(eff["per_pair"]["daehwa"], per)), (eff, per)
    assert abs(eff["daehwa"] - statistics.median(per)) < 1e-9, (eff, per)
    assert len(eff["per_pair"]["llama_cpp"]) == 3, eff
assert "Bandwidth efficiency of tg16" in table and "median over pairs" in table, table
assert "raw per-run tokens/s" in err and "t=2 tg16: daehwa [23.0, 24.0, 25.0]" in err, err[-800:]
assert "Memory bandwidth" in table
PY
then ok "medians, ratios, JSON, table and raw runs are right"
else fail "output check"; fi

# 2. A daehwa that prints no JSON is an error that says so, not a crash or a silent zero.
if DAEHWA_BIN="echo not-json" "$HERE/compare" --model "$model" --threads 1 --pairs 1 -p 16 -n 4 \
        --no-membw >"$tmp/stdout2" 2>"$tmp/stderr2"; then
    fail "compare accepted a daehwa that printed no JSON"
elif grep -q "daehwa bench printed no JSON" "$tmp/stderr2"; then
    ok "a daehwa without JSON output is reported"
else
    fail "unexpected error text:"; tail -5 "$tmp/stderr2"
fi

# 3. A daehwa that ran with another thread count than asked is caught.
cat >"$tmp/wrong-threads" <<'SH'
#!/bin/sh
echo '{"pp_tokens_per_s": 1.0, "tg_tokens_per_s": 1.0, "threads": 7}'
SH
chmod +x "$tmp/wrong-threads"
if DAEHWA_BIN="$tmp/wrong-threads" "$HERE/compare" --model "$model" --threads 1 --pairs 1 -p 16 -n 4 \
        --no-membw >/dev/null 2>"$tmp/stderr3"; then
    fail "compare accepted a wrong thread count"
elif grep -q "ran with 7 threads, asked for 1" "$tmp/stderr3"; then
    ok "a wrong thread count is reported"
else
    fail "unexpected error text:"; tail -5 "$tmp/stderr3"
fi

# 4. A missing model path is an error.
if DAEHWA_BIN="$HERE/testdata/fake-daehwa" "$HERE/compare" --model /nonexistent/x.gguf --no-membw \
        >/dev/null 2>"$tmp/stderr4"; then
    fail "compare accepted a missing model"
elif grep -q "does not exist" "$tmp/stderr4"; then
    ok "a missing model file is reported"
else
    fail "unexpected error text:"; tail -5 "$tmp/stderr4"
fi

# 5. The batched test: fake daehwa's batched figure (1000 + call index) vs the real llama-batched-bench.
rm -f "$tmp/state"
if DAEHWA_BIN="$HERE/testdata/fake-daehwa" "$HERE/compare" --model "$model" --threads 1 --pairs 2 -p 16 -n 4 \
        --batch 4 --batch-prompt 16 --batch-gen 8 --no-membw --json "$tmp/out5.json" >"$tmp/stdout5" 2>"$tmp/stderr5" \
    && python3 - "$tmp/out5.json" "$tmp/stdout5" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1])); table = open(sys.argv[2]).read()
rows = {r["test"]: r for r in doc["rows"]}
r = rows["tg8 x4 seqs"]
# Calls: pair 1 single (k=0), batched (k=1); pair 2 single (k=2), batched (k=3).
assert r["daehwa_runs"] == [1001.0, 1003.0], r
assert len(r["llama_cpp_runs"]) == 2 and all(x > 0 for x in r["llama_cpp_runs"]), r
assert abs(r["ratio"] - 1002.0 / r["llama_cpp_median_ts"]) < 1e-9, r
assert "| tg8 x4 seqs |" in table, table
assert doc["batch"] == 4 and doc["batch_prompt"] == 16 and doc["batch_gen"] == 8
PY
then ok "the batched row pairs daehwa bench --batch with llama-batched-bench"
else fail "batched run:"; tail -5 "$tmp/stderr5"; fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
