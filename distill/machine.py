"""What this machine and environment are: the CPU (/proc/cpuinfo read once; Linux, elsewhere
empty) for the int8 preset, the bf16 choice and every report's machine line; the key packages'
versions and distill's own commit for every report."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path


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


if __name__ == "__main__":  # `python -m distill.machine`: this environment's versions, as JSON
    import json

    print(json.dumps(package_versions()))
