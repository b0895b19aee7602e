#!/usr/bin/env python3
"""Generate the deterministic benchmark tree for bench/image/run.sh.

    gen-tree.py OUT_DIR [SIZE_MB]

Same arguments, same bytes: every byte comes from random.Random(seed). The mix, by bytes:
about half text-like (source code, logs, INI/XML: compresses 3-6x), a quarter random binary
(executables and data that do not compress much), a sixth already compressed (zlib streams,
as in .cab/.zip/.jpg), and about 10% exact duplicates of earlier files (single-instance
storage). File sizes follow an OS-like spread: tens of thousands of small files, a few hundred
medium ones, a handful of large ones.
"""
import os
import random
import sys
import zlib

out = sys.argv[1]
target = int(sys.argv[2] if len(sys.argv) > 2 else 400) << 20
rng = random.Random(20240229)

WORDS = ("the system file driver windows update service registry value key data error "
         "warning info install package module config user device network boot image disk "
         "partition volume format copy apply capture sequence step group variable task").split()


def corpus(n):
    lines = []
    size = 0
    while size < n:
        k = rng.randint(3, 14)
        line = " ".join(rng.choice(WORDS) for _ in range(k))
        if rng.random() < 0.3:
            line = f"{rng.randint(0, 99999):05d} [{rng.choice(WORDS)}] {line} = 0x{rng.getrandbits(32):08x}"
        lines.append(line)
        size += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


TEXT = corpus(4 << 20)


def text(n):
    start = rng.randrange(0, len(TEXT) - n - 1) if n < len(TEXT) - 1 else 0
    chunk = bytearray(TEXT[start:start + n])
    # Sprinkle edits so files are not plain copies of the corpus.
    for _ in range(max(1, n // 4096)):
        i = rng.randrange(0, len(chunk)) if chunk else 0
        chunk[i:i + 8] = b"%08x" % rng.getrandbits(32)
    return bytes(chunk[:n]) if len(chunk) >= n else bytes(chunk) + TEXT[: n - len(chunk)]


def binary(n):
    return rng.randbytes(n)


def compressed(n):
    data = zlib.compress(rng.randbytes(n // 3) + text(n), 6)
    while len(data) < n:
        data += zlib.compress(rng.randbytes(n // 3) + text(n), 6)
    return data[:n]


def size():
    r = rng.random()
    if r < 0.90:
        return rng.randint(0, 8 << 10)
    if r < 0.995:
        return rng.randint(8 << 10, 64 << 10)
    if r < 0.9995:
        return rng.randint(64 << 10, 1 << 20)
    return rng.randint(4 << 20, 32 << 20)


made = []
total = 0
dirs = [""]
n = 0
while total < target:
    if rng.random() < 0.08 or len(dirs) < 20:
        parent = rng.choice(dirs)
        d = os.path.join(parent, f"dir{len(dirs):05d}")
        dirs.append(d)
        os.makedirs(os.path.join(out, d), exist_ok=True)
    d = rng.choice(dirs)
    r = rng.random()
    if made and r < 0.10:
        data = open(rng.choice(made), "rb").read()
        ext = ".dup"
    else:
        s = size()
        kind = rng.random()
        if kind < 0.55:
            data, ext = text(s), ".txt"
        elif kind < 0.80:
            data, ext = binary(s), ".bin"
        else:
            data, ext = compressed(s), ".gz"
    p = os.path.join(out, d, f"f{n:06d}{ext}")
    with open(p, "wb") as f:
        f.write(data)
    os.utime(p, (1_600_000_000 + n, 1_600_000_000 + n))
    made.append(p)
    total += len(data)
    n += 1
for d in dirs:
    os.makedirs(os.path.join(out, d, "empty"), exist_ok=True)
print(f"{n} files, {len(dirs)} directories, {total >> 20} MiB in {out}")
