#!/usr/bin/env bash
# Build llama.cpp's benchmark/peer tools once, into a cache outside the repository.
#
# The oracle and performance peer of daehwa is llama.cpp exactly as vendored by the
# PyPI package llama-cpp-python==0.3.36 (llama.cpp commit 0c1e570). We take its
# source distribution (an sdist, fetched with pip's ordinary client when it is not
# cached), unpack its vendor/llama.cpp and build only the tools we compare against.
#
# Idempotent: when every wanted binary already exists, it prints the bin directory
# and exits at once. Nothing here is ever committed: it all lives in the cache.
#
# Usage: bench/build-llama-cpp.sh
# Env:   DAEHWA_BENCH_CACHE   cache root (default ~/.cache/daehwa-bench)
#        DAEHWA_LLAMA_SDIST   path to an already-downloaded llama_cpp_python-0.3.36.tar.gz
#        DAEHWA_BUILD_JOBS    parallel compile jobs (default 2: the machine is shared)
#        DAEHWA_LLAMA_AMX     1 to keep Intel AMX kernels (default: compiled out, see below)
# The last line on stdout is always the directory holding the built binaries.
set -euo pipefail

PKG_VERSION="0.3.36"
LLAMA_COMMIT="0c1e570"
SDIST_NAME="llama_cpp_python-${PKG_VERSION}.tar.gz"
CACHE="${DAEHWA_BENCH_CACHE:-$HOME/.cache/daehwa-bench}"
SRC="$CACHE/llama.cpp-${LLAMA_COMMIT}"
BUILD="$SRC/build"
BIN="$BUILD/bin"
JOBS="${DAEHWA_BUILD_JOBS:-2}"
# Tools we want; each is built only if the source tree defines it.
WANTED=(llama-bench llama-batched-bench llama-server llama-tokenize llama-cli)

log() { echo "[build-llama-cpp] $*" >&2; }

# GGML_NATIVE=ON compiles with -march=native, which on the project's Sapphire Rapids VMs turns on
# ggml's AMX matmul; there it dies with SIGILL on `tilezero` (in tinygemm_kernel_amx<q8_1, q4_1>,
# on the first prompt batch), although the kernel grants AMX permission. So AMX is compiled out
# (GCC's explicit -mno-* flags win over -march=native whatever their order); AVX-512/VNNI stay.
# daehwa's kernels use no AMX either, so this is also the like-for-like comparison.
EXTRA_FLAGS=""
if [[ "${DAEHWA_LLAMA_AMX:-0}" != "1" && "$(uname -m)" == "x86_64" ]]; then
    EXTRA_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi

# The sdist carries no git repository, so llama.cpp's build info would say "commit unknown";
# we pass the commit explicitly. A build configured without it, or with other extra flags,
# counts as not built (and is reconfigured; cmake then rebuilds what the change touches).
configured() {
    grep -qs "^LLAMA_BUILD_COMMIT:[A-Z]*=${LLAMA_COMMIT}\$" "$BUILD/CMakeCache.txt" &&
        grep -qs "^DAEHWA_EXTRA_FLAGS:[A-Z]*=${EXTRA_FLAGS}\$" "$BUILD/CMakeCache.txt"
}

all_built() {
    local t
    configured || return 1
    for t in "${WANTED[@]}"; do
        [[ -x "$BIN/$t" ]] || return 1
    done
    return 0
}

if all_built; then
    log "already built in $BIN"
    echo "$BIN"
    exit 0
fi

mkdir -p "$CACHE"

# 1. Locate or download the sdist.
find_sdist() {
    local c
    for c in "${DAEHWA_LLAMA_SDIST:-}" "$CACHE/sdist/$SDIST_NAME" "/tmp/llsrc/$SDIST_NAME"; do
        if [[ -n "$c" && -s "$c" ]]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

if ! SDIST="$(find_sdist)"; then
    log "downloading $SDIST_NAME with pip"
    mkdir -p "$CACHE/sdist"
    # --no-binary for this one package only: ':all:' would build cmake etc. from source.
    python3 -m pip download --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==${PKG_VERSION}" -d "$CACHE/sdist" >&2
    SDIST="$(find_sdist)" || { log "pip download did not produce $SDIST_NAME"; exit 1; }
fi
log "sdist: $SDIST"

# 2. Unpack vendor/llama.cpp (once; a marker file records a complete unpack).
if [[ ! -f "$SRC/.daehwa-unpacked" ]]; then
    log "unpacking vendor/llama.cpp into $SRC"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    tar -xzf "$SDIST" -C "$SRC" --strip-components=3 \
        "llama_cpp_python-${PKG_VERSION}/vendor/llama.cpp"
    # Record the exact upstream commit for provenance (the sdist carries the submodule HEAD).
    if tar -xzOf "$SDIST" "llama_cpp_python-${PKG_VERSION}/.git/modules/vendor/llama.cpp/HEAD" \
        >"$SRC/.daehwa-commit" 2>/dev/null; then
        if ! grep -q "^${LLAMA_COMMIT}" "$SRC/.daehwa-commit"; then
            log "warning: vendored llama.cpp is $(cat "$SRC/.daehwa-commit"), expected ${LLAMA_COMMIT}"
        fi
    fi
    touch "$SRC/.daehwa-unpacked"
fi

# 3. cmake: use one on PATH, else pip's binary wheel, else Debian's package.
find_cmake() {
    if command -v cmake >/dev/null 2>&1; then command -v cmake; return 0; fi
    local p
    p="$(python3 -c 'import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, "cmake"))' 2>/dev/null || true)"
    if [[ -n "$p" && -x "$p" ]]; then echo "$p"; return 0; fi
    return 1
}
if ! CMAKE="$(find_cmake)"; then
    log "cmake not found: installing the binary wheel with pip"
    python3 -m pip install cmake >&2 || true
    hash -r
    if ! CMAKE="$(find_cmake)"; then
        log "pip cmake failed: trying apt-get"
        apt-get install -y cmake >&2 || { apt-get update >&2 && apt-get install -y cmake >&2; }
        CMAKE="$(find_cmake)" || { log "no cmake available"; exit 1; }
    fi
fi
log "cmake: $CMAKE ($("$CMAKE" --version | head -1))"

# 4. Configure (once; cheap to redo). LLAMA_CURL is deprecated (a no-op warning) at this version, so it
#    is not passed; the prebuilt web UI would be downloaded at build time, so it is off.
if ! configured; then
    log "configuring"
    nice -n 15 "$CMAKE" -S "$SRC" -B "$BUILD" \
        -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_BUILD_COMMIT="${LLAMA_COMMIT}" \
        -DDAEHWA_EXTRA_FLAGS="${EXTRA_FLAGS}" \
        -DCMAKE_C_FLAGS="${EXTRA_FLAGS}" \
        -DCMAKE_CXX_FLAGS="${EXTRA_FLAGS}" \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DGGML_NATIVE=ON \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_EXAMPLES=ON \
        -DLLAMA_BUILD_SERVER=ON >&2
fi

# 5. Build only the wanted targets that this tree defines.
targets=()
for t in "${WANTED[@]}"; do
    if grep -rqs --include=CMakeLists.txt "set(TARGET ${t})" "$SRC/tools" "$SRC/examples"; then
        targets+=("$t")
    else
        log "target $t does not exist at this version: skipped"
    fi
done
log "building ${targets[*]} with -j${JOBS} (nice 15)"
nice -n 15 "$CMAKE" --build "$BUILD" --config Release -j"$JOBS" --target "${targets[@]}" >&2

for t in "${targets[@]}"; do
    [[ -x "$BIN/$t" ]] || { log "build finished but $BIN/$t is missing"; exit 1; }
done
log "built: ${targets[*]}"
echo "$BIN"
