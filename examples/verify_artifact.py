"""Verify a Veritas artifact signature with cryptography, hashlib and json alone.

usage: python verify_artifact.py MODEL.safetensors MANIFEST.json SIGNATURE_BASE64 PUBLIC_KEY.pem
Prints "OK <key id>" and exits 0, or prints "BAD" and exits 1.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

model, manifest_path, signature, key_path = sys.argv[1:5]
with open(model, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
with open(manifest_path, encoding="utf-8") as f:
    manifest = json.load(f)
canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
message = b"veritas-artifact-v1\n" + digest.encode() + b"\n" + canonical.encode("utf-8")
with open(key_path, "rb") as f:
    key = load_pem_public_key(f.read())
try:
    assert isinstance(key, Ed25519PublicKey), "not an Ed25519 key"
    key.verify(base64.b64decode(signature, validate=True), message)
except Exception:
    print("BAD")
    sys.exit(1)
raw = key.public_bytes_raw()
print("OK", hashlib.sha256(raw).hexdigest()[:16])
