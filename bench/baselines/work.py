"""The workloads' bodies, identical to the built-in tasks' (same digest loop, same sleep), for the baselines."""

from __future__ import annotations

import hashlib


def digest(rounds: int) -> str:
    value, sha256 = b"", hashlib.sha256
    for _ in range(rounds):
        value = sha256(value).digest()
    return value.hex()
