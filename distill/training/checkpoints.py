"""Training checkpoints that let a killed stage continue where it stopped.

Layout: <dir>/step-<N>/{state/ (Accelerate: model, optimizer, RNG), progress.json, best.safetensors}
and <dir>/latest naming the newest complete one. `latest` is replaced atomically only after a
checkpoint is fully written, so a kill at any moment leaves a usable checkpoint (or none).
The optimizer/RNG files are Accelerate's own (torch.save) and only ever read back by this run;
model weights are safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

from accelerate import Accelerator
from safetensors.torch import load_file, save_file


def latest(checkpoint_dir: Path) -> Path | None:
    pointer = checkpoint_dir / "latest"
    if not pointer.is_file():
        return None
    path = checkpoint_dir / pointer.read_text().strip()
    return path if (path / "progress.json").is_file() else None


def save(checkpoint_dir: Path, progress, best_state: dict | None, accelerator: Accelerator) -> Path:
    """Write step-<N>/, then point `latest` at it, then drop older checkpoints."""
    path = checkpoint_dir / f"step-{progress.step}"
    accelerator.save_state(str(path / "state"), safe_serialization=True)
    if accelerator.is_main_process:
        if best_state is not None:
            save_file({k: v.contiguous() for k, v in best_state.items()}, str(path / "best.safetensors"))
        state = dataclasses.asdict(progress)
        state["best_value"] = None if math.isinf(progress.best_value) else progress.best_value
        (path / "progress.json").write_text(json.dumps(state))
        tmp = checkpoint_dir / "latest.tmp"
        tmp.write_text(path.name)
        os.replace(tmp, checkpoint_dir / "latest")
        for old in checkpoint_dir.glob("step-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load(path: Path, accelerator: Accelerator, progress_type):
    """Restore model/optimizer/RNG into the prepared objects; return (progress, best weights)."""
    accelerator.load_state(str(path / "state"))
    state = json.loads((path / "progress.json").read_text())
    if state["best_value"] is None:
        state["best_value"] = -math.inf
    best = path / "best.safetensors"
    return progress_type(**state), (load_file(str(best)) if best.is_file() else None)


def remove(checkpoint_dir: Path, accelerator: Accelerator) -> None:
    """Drop the checkpoints once the stage's artifact is written (they are large and not part of it)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
