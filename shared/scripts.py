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
# Every script's arguments travel as one string, split here (see `shared.batch.Script`): redis-py's cost of a
# command grows with its number of arguments, and the hot scripts take a dozen or more.
_ARGUMENTS = """local ARGV = (function(packed)
  local out, pos = {}, 1
  while true do
    local at = string.find(packed, '\\30', pos, true)
    if not at then
      out[#out + 1] = string.sub(packed, pos)
      return out
    end
    out[#out + 1] = string.sub(packed, pos, at - 1)
    pos = at + 1
  end
end)(ARGV[1] or '')
"""


@cache
def source(name: str) -> str:
    """The script `name` (e.g. `claim-3`) with its includes spliced in, the fragment indexes defined and its
    arguments unpacked."""
    text = (files("shared") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    return _ARGUMENTS + _INCLUDE.sub(lambda match: lua_fields() + fragment(match.group(1)), text)


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
    adopt: Script
    trim: Script

    @classmethod
    def register(cls, batcher: Batcher) -> Scripts:
        names = {
            "create": 8,
            "claim": 3,
            "report": 3,
            "finish": 6,
            "cancel": 5,
            "expire": 6,
            "release": 2,
            "adopt": 2,
            "trim": 1,
        }
        return cls(**{attr: Script(source(f"{attr}-{keys}"), batcher) for attr, keys in names.items()})
