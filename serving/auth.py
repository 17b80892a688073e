"""Bearer-token auth for the inference endpoints.

The token comes from $BIOMED_SERVE_TOKEN, else from a generated file (mode 0600) under the
biomed state folder. Replicas receive only its sha256, so the secret never sits in Serve's
deployment config.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cluster.local_head import state_dir

TOKEN_ENV = "BIOMED_SERVE_TOKEN"
TOKEN_FILE = "serve_token"


def token_path() -> Path:
    return state_dir() / TOKEN_FILE


def resolve_token() -> str:
    """The serving token: the env var, the saved file, or a new one saved with mode 0600."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = token_path()
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authorized(header: str | None, expected_sha256: str) -> bool:
    """True when `Authorization: Bearer <token>` carries the token (constant-time compare)."""
    if not header:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(token_sha256(presented.strip()), expected_sha256)
