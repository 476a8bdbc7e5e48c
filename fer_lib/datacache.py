"""The decoded-array cache: FER2013 decodes once, then loads in well under a second.

A cache file is named by a hash of the source's *content* (every byte of the zip or CSV,
every file of a folder, with its relative name), so no changed source is ever served
from the cache, whatever its size or modification time say. Hashing the 62 MB zip takes
a fraction of a second; decoding it takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .readers import IMAGE_SIZE, folder_members

# Bump when the cached arrays' meaning changes, so old caches are never read.
_CACHE_VERSION = 2
_CHUNK = 1 << 20


def cache_folder(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("FER_CACHE_DIR", "").strip()
    return Path(env) if env else Path.home() / ".cache" / "fer_lib"


def _hash_file(path: Path, digest) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def content_hash(kind: str, path: Path) -> str:
    """blake2b of the source's bytes (a folder: each member's relative name and bytes)."""
    digest = hashlib.blake2b(f"v{_CACHE_VERSION}|{kind}".encode(), digest_size=16)
    if kind == "folder":
        for member in folder_members(path):
            digest.update(member.relative_to(path).as_posix().encode() + b"\0")
            _hash_file(member, digest)
            digest.update(b"\0")
    else:
        _hash_file(path, digest)
    return digest.hexdigest()


def cache_path(kind: str, path: Path, cache_dir: Path) -> Path:
    """``fer2013-<where>-<content>.npz``: ``where`` hashes the resolved path (so a
    source's old caches can be found and dropped), ``content`` its bytes."""
    resolved = path.resolve()
    where = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return cache_dir / f"fer2013-{where}-{content_hash(kind, resolved)}.npz"


def read_cache(cache_file: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when missing or unreadable (then it is rewritten)."""
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("images", "labels", "usage", "skipped")}
    except Exception:  # any unreadable cache (truncated, garbage, old format) is a miss
        return None
    n = len(arrays["labels"])
    if arrays["images"].shape != (n, IMAGE_SIZE, IMAGE_SIZE) or arrays["usage"].shape != (n,):
        return None
    return arrays


def write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (tmp file + rename), then drop stale caches of the same source."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=cache_file.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, cache_file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    where = cache_file.name.rsplit("-", 1)[0]
    for stale in cache_file.parent.glob(f"{where}-*.npz"):
        if stale != cache_file:
            stale.unlink(missing_ok=True)
