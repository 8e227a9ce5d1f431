"""Refuse an unsupported release of a dependency before anything imports it, in one line.

The supported ranges are distill's own requirements as installed (pyproject.toml's lower bounds),
read from the package metadata: no second copy of them to keep in step.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from distill.errors import DistillError


def requirements() -> list[Requirement]:
    """distill's requirements, extras included (an extra's package is checked when installed)."""
    try:
        lines = metadata.requires("distill") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return []
    own = canonicalize_name("distill")
    return [req for req in map(Requirement, lines) if canonicalize_name(req.name) != own]


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_versions() -> None:
    """Raise DistillError naming the first package whose installed version is outside its range
    (or a required package that is missing)."""
    for req in requirements():
        found = installed_version(req.name)
        if found is None:
            if req.marker is None:  # a core dependency; extras are optional
                raise DistillError(f"{req.name} is not installed; distill needs {req.name}{req.specifier}")
            continue
        # prereleases=True: a dev build of a supported release (5.1.0.dev0) is not refused for being one
        if not req.specifier.contains(found, prereleases=True):
            raise DistillError(f"{req.name} {found} is not supported; distill needs {req.name}{req.specifier} "
                               f"(pip install '{req.name}{req.specifier}')")
