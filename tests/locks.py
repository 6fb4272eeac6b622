"""The lock files that scripts/lock writes with pip-compile, read back and checked against pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from tests.processes import ROOT

RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"  # what the image installs
DEV_LOCK = ROOT / "requirements" / "dev.txt"  # what scripts/setup, and so CI, installs
PROJECT = canonicalize_name("background-tasks")
FROM_PYPROJECT = "background-tasks (pyproject.toml)"  # pip-compile's `# via` for what pyproject.toml names itself
HASH = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: tuple[str, ...]
    via: tuple[str, ...]  # pip-compile's annotation: what pulled the package in


def read_lock(path: Path) -> dict[NormalizedName, Pin]:
    """Every entry of a lock by package name; an entry that is not `name==version` is an error."""
    pins: dict[NormalizedName, Pin] = {}
    for lines in entries(path.read_text()):
        code = " ".join(line.strip().rstrip("\\") for line in lines if not line.lstrip().startswith("#"))
        text, *hashes = code.split(" --hash=")
        requirement = Requirement(text.strip())
        specifiers = list(requirement.specifier)
        if requirement.url or len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"{path.name}: {text.strip()!r} is not pinned to one exact version")
        comments = (line.strip().removeprefix("#").strip() for line in lines if line.lstrip().startswith("#"))
        via = tuple(item for item in (re.sub(r"^via\b", "", comment).strip() for comment in comments) if item)
        name = canonicalize_name(requirement.name)
        if name in pins:
            raise ValueError(f"{path.name}: {name} is pinned twice")
        pins[name] = Pin(Version(specifiers[0].version), tuple(value.strip() for value in hashes), via)
    return pins


def entries(text: str) -> list[list[str]]:
    """The lines of each entry: its requirement at the start of a line, then its indented hashes and comments."""
    found: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and found:
            found[-1].append(line)
        elif line.strip() and not line.startswith("#"):
            found.append([line])
    return found


def pyproject_requirements(lock: Path) -> list[Requirement]:
    """What pyproject.toml asks of a lock on this platform: the dependencies, and for the dev lock every extra's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    if lock == DEV_LOCK:
        texts += [text for extra in project["optional-dependencies"].values() for text in extra]
    requirements = [Requirement(text) for text in texts]
    here = [requirement for requirement in requirements if requirement.marker is None or requirement.marker.evaluate()]
    return [requirement for requirement in here if canonicalize_name(requirement.name) != PROJECT]  # no self-reference
