"""A content-addressed artifact store on a local directory (no torch).

An object's name is the sha256 of its bytes, stored at ``objects/<2 hex>/<62 hex>``. Writes go
through a temporary file under ``tmp/`` (same file system), are fsynced, then renamed into place
and the directory fsynced: a reader sees a whole object or none. Putting the same bytes twice
stores one object. Objects are made read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ml.util import fsync_dir

_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore:
    """Objects by sha256 under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        """Where the object with this digest lives (whether or not it exists)."""
        if not _SHA256.match(sha256):
            raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
        return self.objects / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """The object's bytes for reading; ``KeyError`` when it is absent."""
        try:
            return self.path_of(sha256).open("rb")
        except FileNotFoundError:
            raise KeyError(sha256) from None

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; its sha256."""
        return self._put(iter([data]))

    def put_file(self, path: Path) -> str:
        """Store a file's bytes (streamed); its sha256."""
        with path.open("rb") as f:
            return self._put(iter(lambda: f.read(_CHUNK), b""))

    def delete(self, sha256: str) -> bool:
        """Remove the object; False when it was not there."""
        path = self.path_of(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    def verify(self, sha256: str) -> bool:
        """Whether the stored bytes still hash to their name."""
        with self.open(sha256) as f:
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def _put(self, chunks: Iterable[bytes]) -> str:
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        try:
            digest = self._write(fd, chunks)
            target = self.path_of(digest)
            if target.is_file():
                os.unlink(tmp)  # idempotent: the same bytes are already stored
                return digest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
            fsync_dir(target.parent)
            return digest
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _write(fd: int, chunks: Iterable[bytes]) -> str:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        return digest.hexdigest()


@dataclass(frozen=True)
class BundleDigests:
    model: str
    manifest: str
    profile: str
    card: str
    reference: str | None = None


def put_bundle(
    store: ArtifactStore,
    model_path: Path,
    manifest_path: Path,
    profile_path: Path,
    card_path: Path,
    reference_path: Path | None = None,
) -> BundleDigests:
    """Store an artifact, its manifest, reference profile and model card; their digests."""
    return BundleDigests(
        model=store.put_file(model_path),
        manifest=store.put_file(manifest_path),
        profile=store.put_file(profile_path),
        card=store.put_file(card_path),
        reference=store.put_file(reference_path) if reference_path is not None else None,
    )
