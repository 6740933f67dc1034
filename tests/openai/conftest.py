"""The official `openai` Python SDK against a running `daehwa serve`.

Environment (set by tests/serve_openai.rs, which starts the server):
  DAEHWA_BASE_URL   e.g. http://127.0.0.1:38211/v1
  DAEHWA_API_KEY    the key the server was started with
  DAEHWA_MODEL_ID   the model's API name (smollm2)
  DAEHWA_GOLDEN_DIR llama.cpp's golden outputs (shared/golden)
  DAEHWA_MAX_SEQS, DAEHWA_QUEUE   the server's --max-seqs and --queue
"""

import json
import os
import pathlib
import urllib.error
import urllib.request

import openai
import pytest

BASE_URL = os.environ.get("DAEHWA_BASE_URL", "")
API_KEY = os.environ.get("DAEHWA_API_KEY", "")
MODEL = os.environ.get("DAEHWA_MODEL_ID", "smollm2")


def _require_server():
    if not BASE_URL:
        pytest.fail("DAEHWA_BASE_URL is not set: run these tests through `cargo test --test serve_openai`")


@pytest.fixture(scope="session")
def client():
    _require_server()
    # No retries: a 429 or 5xx must surface as the SDK's exception, not be retried away.
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY or "unused", max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def goldens():
    d = os.environ.get("DAEHWA_GOLDEN_DIR") or str(pathlib.Path(__file__).resolve().parents[3] / "shared" / "golden")
    path = pathlib.Path(d) / "chat-smollm2-q4_1.jsonl"
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing (set DAEHWA_GOLDEN_DIR)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def http(method, path, body=None, key=API_KEY):
    """A raw request to the server (for what the SDK cannot send); returns (status, text)."""
    _require_server()
    root = BASE_URL[: -len("/v1")] if BASE_URL.endswith("/v1") else BASE_URL
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(root + path, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics():
    """`/metrics` parsed into {series: value} (labels kept in the series name)."""
    status, text = http("GET", "/metrics")
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
