"""ml.store: content addressing, idempotency, atomic writes, delete, the bundle."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ml import store as store_module
from ml.store import ArtifactStore, put_bundle


def test_put_get_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "s")
    digest = store.put_bytes(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.path_of(digest) == tmp_path / "s" / "objects" / digest[:2] / digest[2:]
    source = tmp_path / "f"
    source.write_bytes(b"hello")
    assert store.put_file(source) == digest and store.put_bytes(b"hello") == digest
    objects = [p for p in (tmp_path / "s" / "objects").rglob("*") if p.is_file()]
    assert objects == [store.path_of(digest)]
    assert list((tmp_path / "s" / "tmp").iterdir()) == []
    with store.open(digest) as f:
        assert f.read() == b"hello"
    assert store.has(digest) and store.verify(digest)


def test_a_big_file_is_streamed(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "big").write_bytes(data)
    store = ArtifactStore(tmp_path / "s")
    digest = store.put_file(tmp_path / "big")
    assert digest == hashlib.sha256(data).hexdigest() and store.path_of(digest).read_bytes() == data


def test_delete_and_missing_objects(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    digest = store.put_bytes(b"x")
    assert store.delete(digest) and not store.has(digest) and not store.delete(digest)
    with pytest.raises(KeyError):
        store.open(digest)
    with pytest.raises(ValueError):
        store.path_of("../../etc/passwd")


def test_no_partial_object_is_ever_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(tmp_path)
    digest = hashlib.sha256(b"payload").hexdigest()
    seen: list[bool] = []
    real_fsync = os.fsync

    def fsync_then_look(fd: int) -> None:
        seen.append(store.path_of(digest).exists())  # while the bytes are being made durable
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", fsync_then_look)
    assert store.put_bytes(b"payload") == digest
    assert seen and seen[0] is False

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.put_bytes(b"other payload")
    assert not store.has(hashlib.sha256(b"other payload").hexdigest())
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary file is cleaned up


def test_bundle_stores_every_part(tmp_path: Path) -> None:
    parts = {}
    for name in ("model", "manifest", "profile", "card"):
        parts[name] = tmp_path / name
        parts[name].write_bytes(name.encode())
    store = ArtifactStore(tmp_path / "s")
    bundle = put_bundle(store, parts["model"], parts["manifest"], parts["profile"], parts["card"])
    assert bundle.model == hashlib.sha256(b"model").hexdigest() and bundle.reference is None
    assert all(store.has(d) for d in (bundle.model, bundle.manifest, bundle.profile, bundle.card))
