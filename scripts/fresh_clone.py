"""The README's two set-up commands on a fresh clone of this repository's HEAD, timed: what a new
user (and CI) sees, venv built from nothing.

    python3 scripts/fresh_clone.py [--stack current|legacy] [--skip-demo] [--out benchmarks/fresh_clone.json]

The clone gets a `../shared` link to this checkout's, so the offline data is found as in CI.
Standard library only (and distill/machine.py, which is too): it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from distill import machine  # noqa: E402  (standard library only, like this script)


def timed(command: list[str], cwd: Path, log: Path) -> dict:
    started = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}).returncode
    tail = log.read_text(errors="replace").strip().splitlines()[-12:]
    return {"command": " ".join(command), "returncode": rc, "seconds": round(time.monotonic() - started, 1), "output_tail": tail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="current", choices=["current", "legacy"])
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    stack = [] if args.stack == "current" else ["STACK=legacy"]
    with tempfile.TemporaryDirectory(prefix="distill-fresh-") as tmp:
        clone = Path(tmp) / "distill"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        shared = REPO.parent / "shared"
        if shared.is_dir():
            (Path(tmp) / "shared").symlink_to(shared)
        results = {}
        if not args.skip_demo:
            results["demo"] = timed(["make", "demo", *stack], clone, Path(tmp) / "demo.log")
        results["test"] = timed(["make", "test", *stack], clone, Path(tmp) / "test.log")
        versions = subprocess.run([str(clone / (".venv" if args.stack == "current" else ".venv-legacy") / "bin" / "python"),
                                   "-m", "distill.machine"], capture_output=True, text=True).stdout.strip()
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in machine.cpu_flags()]
    record = {"command": "python3 scripts/fresh_clone.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit, "stack": args.stack, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{os.cpu_count()} cores, flags: {' '.join(flags)}", "packages": json.loads(versions or "{}"), **results}
    print(json.dumps({k: (v if not isinstance(v, dict) or "returncode" not in v else {x: v[x] for x in ("returncode", "seconds")})
                      for k, v in record.items()}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0 if all(r["returncode"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
