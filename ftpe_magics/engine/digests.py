"""Short, stable hashes of plain values: every cache key, fingerprint and signature of the engine is one.

Keys are sorted, so a dict's order does not matter; the digest is 12 bytes of BLAKE2b (collisions between the
few thousand keys a store holds are out of reach). Below every concern, so weights, adapters and results hash
alike.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(value: Any) -> str:
    """A short, stable hash of any JSON-able value (keys sorted, so dict order does not matter)."""
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
