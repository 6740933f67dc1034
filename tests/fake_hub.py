#!/usr/bin/env python3
"""A local stand-in for the Hugging Face hub, for `daehwa pull hf:` tests (the test machines cannot
reach huggingface.co). Serves the repositories under ROOT (ROOT/ORG/REPO/...files) in the hub's URL
layout and API shapes, on 127.0.0.1 only:

- GET /api/models/ORG/REPO/tree/REV?recursive=true: a JSON array of {"type": "file"|"directory",
  "oid", "size", "path", "lfs": {"oid": sha256, "size", "pointerSize"}} (LFS for *.gguf), as
  huggingface_hub's `list_repo_tree` reads it; 404 + X-Error-Code: RepoNotFound for an unknown repo.
- GET /ORG/REPO/resolve/REV/PATH: 302 to a CDN-like URL on a second listening port (another
  origin, as cdn-lfs.hf.co is another host), with X-Repo-Commit and X-Linked-Etag; a repository with a
  `.gated` file (holding the token) answers 401 + X-Error-Code: GatedRepo without a bearer token and
  403 with a wrong one.
- GET on the CDN port: the file, with Range support (206 + Content-Range); a request that carries
  an Authorization header is refused (400: tokens must not leak to the CDN).
- POST /_control (JSON): {"drop_after": N, "drop_times": K} makes the next K CDN responses stop
  after N body bytes and close the connection; {"corrupt": true} flips one byte of every file body
  served (the tree still reports the true sha256); {} resets both.
- GET /_log: the CDN requests seen so far ([{"path", "range"}]).

Prints "HUB_PORT CDN_PORT" on stdout, then serves until stdin closes (its parent died) or 300 s pass.
Usage: tests/fake_hub.py ROOT
"""

import hashlib
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.abspath(sys.argv[1])
STATE = {"drop_after": None, "drop_times": 0, "corrupt": False, "log": []}
LOCK = threading.Lock()
SHA = {}


def sha256(path):
    key = (path, os.path.getmtime(path), os.path.getsize(path))
    if key not in SHA:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        SHA[key] = h.hexdigest()
    return SHA[key]


def repo_dir(org, repo):
    d = os.path.join(ROOT, org, repo)
    return d if os.path.isdir(d) and ".." not in (org, repo) else None


class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, code, msg):
        self.send(status, json.dumps({"error": msg}).encode(), [("X-Error-Code", code), ("X-Error-Message", msg), ("Content-Type", "application/json")])


class Hub(Quiet):
    def do_POST(self):
        if self.path != "/_control":
            return self.send(404)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        with LOCK:
            STATE["drop_after"] = body.get("drop_after")
            STATE["drop_times"] = body.get("drop_times", 0)
            STATE["corrupt"] = body.get("corrupt", False)
        self.send(200, b"{}")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if parts == ["_log"]:
            with LOCK:
                return self.send(200, json.dumps(STATE["log"]).encode(), [("Content-Type", "application/json")])
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "tree":
            return self.tree(parts[2], parts[3], parts[6:])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve(parts[0], parts[1], parts[3], "/".join(parts[4:]))
        self.error(404, "EntryNotFound", "no such route")

    def tree(self, org, repo, sub):
        d = repo_dir(org, repo)
        if d is None:
            return self.error(404, "RepoNotFound", "Repository not found")
        entries = []
        for top, dirs, files in os.walk(d):
            dirs.sort()
            rel = os.path.relpath(top, d)
            for name in sorted(dirs):
                entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": os.path.normpath(os.path.join(rel, name))})
            for name in sorted(files):
                if name.startswith("."):
                    continue
                p = os.path.join(top, name)
                path = os.path.normpath(os.path.join(rel, name))
                e = {"type": "file", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": os.path.getsize(p), "path": path}
                if name.endswith(".gguf"):
                    e["lfs"] = {"oid": sha256(p), "size": os.path.getsize(p), "pointerSize": 134}
                entries.append(e)
        self.send(200, json.dumps(entries).encode(), [("Content-Type", "application/json")])

    def resolve(self, org, repo, rev, path):
        d = repo_dir(org, repo)
        if d is None:
            return self.error(404, "RepoNotFound", "Repository not found")
        gated = os.path.join(d, ".gated")
        if os.path.exists(gated):
            token = open(gated).read().strip()
            auth = self.headers.get("Authorization")
            if auth is None:
                return self.error(401, "GatedRepo", f"Access to model {org}/{repo} is restricted. You must have access to it and be authenticated to access it. Please log in.")
            if auth != f"Bearer {token}":
                return self.error(403, "GatedRepo", f"Access to model {org}/{repo} is restricted and you are not in the authorized list.")
        p = os.path.normpath(os.path.join(d, path))
        if not p.startswith(d + os.sep) or not os.path.isfile(p):
            return self.error(404, "EntryNotFound", f"{path} does not exist")
        rel = urllib.parse.quote(os.path.relpath(p, ROOT))
        loc = f"http://127.0.0.1:{CDN_PORT}/repos/{rel}?X-Amz-Signature=fake"
        self.send(302, b"", [("Location", loc), ("X-Repo-Commit", "0" * 40), ("X-Linked-Etag", f'"{sha256(p)}"'), ("X-Linked-Size", str(os.path.getsize(p)))])


class Cdn(Quiet):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        rel = urllib.parse.unquote(url.path[len("/repos/"):])
        p = os.path.normpath(os.path.join(ROOT, rel))
        if not url.path.startswith("/repos/") or not p.startswith(ROOT + os.sep) or not os.path.isfile(p):
            return self.send(404)
        if self.headers.get("Authorization") is not None:
            return self.send(400, b"an Authorization header reached the CDN")
        size = os.path.getsize(p)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            a, b = rng.removeprefix("bytes=").split("-")
            start, end, status = int(a), (int(b) if b else size - 1), 206
            end = min(end, size - 1)
        with LOCK:
            STATE["log"].append({"path": rel, "range": rng})
            drop = None
            if STATE["drop_times"] and STATE["drop_after"] is not None:
                STATE["drop_times"] -= 1
                drop = STATE["drop_after"]
            corrupt = STATE["corrupt"]
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with open(p, "rb") as f:
            f.seek(start)
            body = bytearray(f.read(end - start + 1))
        flip = size // 2
        if corrupt and start <= flip <= end:
            body[flip - start] ^= 0xFF
        if drop is not None:
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def serve(cls):
    s = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


cdn = serve(Cdn)
CDN_PORT = cdn.server_address[1]
hub = serve(Hub)
print(hub.server_address[1], CDN_PORT, flush=True)
deadline = time.time() + 300
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
while time.time() < deadline:
    time.sleep(0.5)
os._exit(0)
