"""What an executable is, beyond its path: a path is replaced; its content digest is
what it runs."""

from __future__ import annotations

import os

DIGEST_CHUNK_BYTES = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """`sha256:<hex>` of the file's contents."""
    import hashlib  # only launches and update passes hash

    digest = hashlib.sha256()
    buffer = bytearray(DIGEST_CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            digest.update(view[:count])
    return f"sha256:{digest.hexdigest()}"
