"""Staff tokens: what the widget connects with.

A token is an HS256 JWT with ``sub`` (the staff id), ``aud: "tally"``, ``iat`` and ``exp``, signed
with the secret the work app shares with the relay (``TALLY_SECRET``, at least 32 bytes). The
widget asks for a fresh one on every connect, so a short lifetime costs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

STAFF_ID = re.compile(r"[a-z0-9._-]{1,64}")
#: The relay refuses tokens that live longer (``--max-token-ttl``).
MAX_TTL = 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def staff_token(staff_id: str, secret: str | bytes, *, ttl: int = 900, now: int | None = None) -> str:
    """A token for ``staff_id``, valid for ``ttl`` seconds (15 minutes by default)."""
    if not STAFF_ID.fullmatch(staff_id) or staff_id == "system":
        raise ValueError(f"not a staff id: {staff_id!r} (1 to 64 of a-z 0-9 . _ -, not 'system')")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(key) < 32:
        raise ValueError("the token secret must be at least 32 bytes")
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be 1 to {MAX_TTL} seconds")
    issued = int(time.time()) if now is None else now
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": staff_id, "aud": "tally", "iat": issued, "exp": issued + ttl}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"
