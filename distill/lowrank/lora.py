"""LoRA (Hu et al. 2021) through PEFT for any stage that trains: the base weights stay frozen,
small rank-r updates of the target layers and the task head are trained, and the update is
merged into the base weights when the stage ends, so the artifact is a plain model again.

    peft_model = add_lora(model, LoraSettings(rank=8))        # before training
    model = merge_lora(peft_model, adapter_dir=folder / "adapter")  # after (adapter kept if given)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from distill import DistillError
from distill.models.families import family_of

if TYPE_CHECKING:  # peft is imported where LoRA is used: it imports bitsandbytes, seconds at every start
    from peft import LoraConfig, PeftModel

def default_target_modules(model: nn.Module, field: str = "lora") -> list[str]:
    """The layers LoRA adapts when the recipe names none: the family's query and value projections."""
    return list(family_of(model, f"{field}.target_modules").lora_targets)


def lora_config(model: nn.Module, settings, field: str = "lora") -> LoraConfig:
    """PEFT's LoraConfig for a sequence or token classifier from the recipe's `lora:` block (LoraSettings)."""
    from peft import LoraConfig, TaskType

    per_token = type(model).__name__.endswith("ForTokenClassification")
    return LoraConfig(
        task_type=TaskType.TOKEN_CLS if per_token else TaskType.SEQ_CLS,
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules or default_target_modules(model, field)),
        # The head layers the checkpoint lacks are trained in full (PEFT adds classifier / score for SEQ_CLS itself).
        modules_to_save=list(settings.modules_to_save or family_of(model, field).new_head_modules),
    )


def add_lora(model: nn.Module, settings, field: str = "lora") -> PeftModel:
    """The model with LoRA adapters: only they and the head (`modules_to_save`) require gradients."""
    from peft import get_peft_model

    config = lora_config(model, settings, field)
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. target modules that match no layer
        raise DistillError(f"{field}.target_modules: {str(err).splitlines()[0]}") from None


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: PeftModel, adapter_dir: Path | None = None):
    """The base model with the adapters merged into its weights (and the trained head copies in
    place of the originals). With `adapter_dir`, the unmerged adapter is saved there first
    (adapter_config.json + adapter_model.safetensors), loadable with PeftModel.from_pretrained."""
    if adapter_dir is not None:
        model.save_pretrained(adapter_dir, safe_serialization=True)
    merged = model.merge_and_unload()
    for parameter in merged.parameters():  # PEFT froze the base weights; later training starts from a plain model
        parameter.requires_grad_(True)
    return merged


# ---------------------------------------------------------------- hooks for the training stages


def with_lora(model: nn.Module, settings, field: str):
    """`model` with LoRA adapters if the stage has a `lora:` block, else `model` unchanged."""
    return model if settings is None else add_lora(model, settings, field)


def finish_lora(model: nn.Module, settings, folder: Path, accelerator) -> tuple[nn.Module, dict | None]:
    """After training: (merged model, report entry). The adapter goes to `<folder>/adapter/` if
    the stage keeps it."""
    if settings is None:
        return model, None
    entry = {
        "rank": settings.rank,
        "alpha": settings.alpha,
        "dropout": settings.dropout,
        "target_modules": sorted(model.peft_config["default"].target_modules),
        "modules_to_save": sorted(set(model.peft_config["default"].modules_to_save or [])),  # PEFT appends its SEQ_CLS names
        "trainable_params": trainable_parameters(model),
        "adapter": "adapter" if settings.keep_adapter else None,
    }
    keep = settings.keep_adapter and accelerator.is_main_process
    merged = merge_lora(model, Path(folder) / "adapter" if keep else None)
    accelerator.wait_for_everyone()
    return merged, entry
