"""How a record is stored, and the read model built from it.

One Redis string per task: fragments joined by the unit separator (0x1f), which no JSON text contains
unescaped. First the private fragments (version, owner, ...), then the record's fields in contract order
(each the field's JSON encoding; the id is the key's, not stored again). A read is one `GET`, and the API
answers with the fragments joined into JSON, without decoding or re-encoding anything. The Lua scripts
split and join the same fragments (their indexes come from `LUA_FIELDS`, generated from this module).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from shared.record import RECORD_FIELDS, TERMINAL_STATES

SEPARATOR = b"\x1f"
# Private fragments: never sent to clients.
PRIVATE = (
    "version",  # bumped by every change a client can see; the ETag and the per-task event id
    "owner",  # hash of the API key that created it ('' without authentication)
    "max_attempts",
    "cancel",  # '1' once a stop was asked for a running attempt
    "lease",  # why it is in the leases set: '' none, q queued in-process, d dispatch unconfirmed, r running, b backoff
    "created_us",  # creation time in µs (the index score), and when the running attempt started
    "started_us",
    "resent_us",  # when a sweeper last sent a long-queued Celery task's message again (0: never)
)
PUBLIC = tuple(field for field in RECORD_FIELDS if field != "id")
FRAGMENTS = PRIVATE + PUBLIC
INDEX = {name: i for i, name in enumerate(FRAGMENTS)}
_FIRST_PUBLIC = len(PRIVATE)
_PREFIXES = tuple(f',"{name}":'.encode() for name in PUBLIC)


def lua_fields() -> str:
    """`local F = {version = 1, ...}`: the fragment indexes for the scripts (Lua counts from 1)."""
    pairs = ", ".join(f"{name} = {i + 1}" for i, name in enumerate(FRAGMENTS))
    return f"local F = {{{pairs}}}\nlocal NFRAGMENTS = {len(FRAGMENTS)}\n"


def encode(fragments: dict[str, str]) -> bytes:
    """A new stored record from every fragment by name."""
    return SEPARATOR.join(fragments[name].encode() for name in FRAGMENTS)


def record_json(task_id: str, parts: list[bytes]) -> bytes:
    """The record a client sees, from the stored fragments."""
    body = [b'{"id":"', task_id.encode(), b'"']
    for prefix, value in zip(_PREFIXES, parts[_FIRST_PUBLIC:], strict=True):
        body.append(prefix)
        body.append(value)
    body.append(b"}")
    return b"".join(body)


@dataclass(frozen=True)
class Snapshot:
    """One record exactly as stored, with what the API needs of its private part."""

    task_id: str
    parts: list[bytes]

    @classmethod
    def parse(cls, task_id: str, raw: bytes) -> Snapshot:
        parts = raw.split(SEPARATOR)
        if len(parts) != len(FRAGMENTS):
            raise ValueError(f"task {task_id}: a stored record of {len(parts)} fragments, not {len(FRAGMENTS)}")
        return cls(task_id, parts)

    @cached_property
    def json(self) -> bytes:
        return record_json(self.task_id, self.parts)

    @property
    def version(self) -> int:
        return int(self.parts[0])

    @property
    def etag(self) -> str:
        """A strong ETag: the record's version, which changes exactly when what a client sees changes."""
        return f'"{self.parts[0].decode()}"'

    def raw(self, name: str) -> bytes:
        return self.parts[INDEX[name]]

    def text(self, name: str) -> str | None:
        value = json.loads(self.parts[INDEX[name]])
        return value if isinstance(value, str) else None

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        return datetime.fromisoformat(value) if value else None

    @cached_property
    def state(self) -> str:
        return self.parts[INDEX["state"]].decode().strip('"')

    @property
    def owner(self) -> str:
        return self.parts[INDEX["owner"]].decode()

    @property
    def name(self) -> str:
        return self.parts[INDEX["name"]].decode().strip('"')

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def visible_to(self, owner: str | None) -> bool:
        """Whether this caller may see it: None is "no authentication", otherwise the owner must match."""
        return owner is None or self.parts[INDEX["owner"]] == owner.encode()
