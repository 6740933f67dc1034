#!/usr/bin/env python3
"""Dequantizes rows with the PyPI `gguf` package (the oracle of tests/quant_gguf_py.rs).

stdin: one job per line, `TYPE HEX` (TYPE a GGMLQuantizationType name such as Q3_K, HEX the
row's raw block bytes). stdout: one line per job, the hex of the little-endian f32 values
`gguf.quants.dequantize` returns. Exit 3 when the package is missing (the test then fails
with the install command).
"""

import sys

try:
    import gguf
    import numpy as np
    from gguf import quants
except ImportError as err:
    print(f"needs gguf==0.19.0: {err}", file=sys.stderr)
    sys.exit(3)

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    name, hexdata = line.split()
    qtype = gguf.GGMLQuantizationType[name]
    data = np.frombuffer(bytes.fromhex(hexdata), dtype=np.uint8)
    with np.errstate(over="ignore", invalid="ignore"):
        out = quants.dequantize(data, qtype).astype("<f4")
    sys.stdout.write(out.tobytes().hex() + "\n")
