"""What this machine and environment are: the CPU (/proc/cpuinfo read once; Linux, elsewhere
empty) for the int8 preset, the bf16 choice and every report's machine line; the key packages'
versions and distill's own commit for every report; whether those versions are ones distill
supports (`check_versions`, before the CLI imports them)."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from distill import DistillError


@cache
def cpu_info() -> dict[str, str]:
    """The first CPU's /proc/cpuinfo fields, else {}."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    return set(cpu_info().get("flags", "").split())


# The packages whose release changes results or speed; every report records them.
KEY_PACKAGES = ("torch", "transformers", "tokenizers", "huggingface_hub", "datasets", "accelerate", "peft",
                "evaluate", "onnx", "onnxruntime", "optimum", "optimum-onnx", "bitsandbytes")


def package_versions() -> dict[str, str]:
    """Installed versions of KEY_PACKAGES (absent ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def git_commit(folder: Path) -> str | None:
    """The commit checked out where `folder` lives, with "+dirty" when tracked files under `folder`
    differ from it; None outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".") else "")


@cache
def code_commit() -> str | None:
    """distill's own commit (None for an installed wheel). Read once per process, so a run reports
    the code it started with."""
    return git_commit(Path(__file__).resolve().parent)



# ---- the installed packages against distill's requirements: refuse an unsupported release before
# anything imports it, in one line. The ranges are distill's own requirements as installed
# (pyproject.toml's lower bounds), read from the package metadata: no second copy to keep in step.
def requirements() -> list:
    """distill's requirements (packaging Requirements), extras included (an extra's package is
    checked when installed)."""
    # packaging is imported here: the rest of this module is standard library only (scripts/fresh_clone.py).
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

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


if __name__ == "__main__":  # `python -m distill.machine`: this environment's versions, as JSON
    import json

    print(json.dumps(package_versions()))
