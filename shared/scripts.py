"""The store's Lua scripts: one file each in `shared/lua/` (its name says how many keys it takes), shared
fragments included by name with `--@include <fragment>`, registered once per client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from shared.batch import Batcher, Script
from shared.snapshot import lua_fields

_INCLUDE = re.compile(r"^--@include (\w+)$", re.MULTILINE)


@cache
def source(name: str) -> str:
    """The script `name` (e.g. `claim-3`) with its includes spliced in and the fragment indexes defined."""
    text = (files("shared") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda match: lua_fields() + fragment(match.group(1)), text)


def fragment(name: str) -> str:
    return (files("shared") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Scripts:
    """Every transition, registered on one client: `await scripts.claim(keys=..., args=...)`."""

    create: Script
    claim: Script
    report: Script
    finish: Script
    cancel: Script
    expire: Script
    release: Script
    trim: Script

    @classmethod
    def register(cls, batcher: Batcher) -> Scripts:
        names = {"create": 8, "claim": 3, "report": 3, "finish": 8, "cancel": 5, "expire": 6, "release": 2, "trim": 1}
        return cls(**{attr: Script(source(f"{attr}-{keys}"), batcher) for attr, keys in names.items()})
