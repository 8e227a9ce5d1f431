"""Masked-LM teachers and students: loading with an honest check that the MLM head is real,
freezing the body, and saving a folder that loads as a masked LM and as a sequence classifier."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForMaskedLM, PreTrainedModel

from distill import DistillError
from distill.models.sources import check_weights_format, resolve_model_path


def _load_kwargs(allow_pickle: bool, trust_remote_code: bool, revision: str | None, attn_implementation: str | None) -> dict:
    kwargs = {"use_safetensors": None if allow_pickle else True, "trust_remote_code": trust_remote_code, "revision": revision}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def head_missing_keys(model: PreTrainedModel, loading_info: dict) -> list[str]:
    """Weights outside the base model that the checkpoint did not have: for BERT the
    `cls.predictions.*` head. Non-empty means the loaded MLM head is random."""
    prefix = model.base_model_prefix + "."
    return [k for k in loading_info["missing_keys"] if not k.startswith(prefix)]


def load_mlm_model(source: str, *, require_head: bool, allow_pickle: bool = False, trust_remote_code: bool = False,
                   revision: str | None = None, attn_implementation: str | None = None, field: str = "model") -> tuple[PreTrainedModel, bool]:
    """(masked LM, whether its head came from the checkpoint). A checkpoint without a head gets a
    fresh one whose decoder is tied to the word embeddings, as BERT's is; with `require_head` that
    is an error instead (a random head would teach noise)."""
    path = resolve_model_path(source)
    check_weights_format(path, allow_pickle)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            path, output_loading_info=True, **_load_kwargs(allow_pickle, trust_remote_code, revision, attn_implementation))
    except (OSError, ValueError, RuntimeError) as err:
        raise DistillError(f"{field}: cannot load '{source}' as a masked LM ({str(err).splitlines()[0]})") from None
    missing = head_missing_keys(model, info)
    if missing and require_head:
        raise DistillError(f"{field}: '{source}' has no trained MLM head ({', '.join(sorted(missing)[:3])}, ... are not in "
                           "the checkpoint): add a `kind: mlm_head` stage before this one, or use a teacher with an MLM head")
    if missing and not model.config.tie_word_embeddings:
        model.config.tie_word_embeddings = True
        model.tie_weights()
    return model, not missing


def pooler_weights(source: str, mlm_model: PreTrainedModel, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                   revision: str | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's pooler, which *ForMaskedLM drops but BERT sequence classifiers use. Kept in
    the saved masked LM (as Hub BERT checkpoints do) so a classifier fine-tuned from it starts from
    the same pooler as one built from the original checkpoint. Empty when there is none."""
    path = resolve_model_path(source)
    try:
        base, info = AutoModel.from_pretrained(path, output_loading_info=True,
                                               **_load_kwargs(allow_pickle, trust_remote_code, revision, None))
    except (OSError, ValueError, RuntimeError):
        return {}
    pooler = getattr(base, "pooler", None)
    if pooler is None or any("pooler" in k for k in info["missing_keys"]):
        return {}
    prefix = mlm_model.base_model_prefix
    return {f"{prefix}.pooler.{k}": v.detach().clone() for k, v in pooler.state_dict().items()}


def freeze_body(model: PreTrainedModel) -> None:
    """Train the MLM head only: the encoder and the embeddings (hence the tied decoder) stay fixed."""
    model.base_model.requires_grad_(False)


def save_masked_lm(model: PreTrainedModel, tokenizer, folder: Path, extra_weights: dict[str, torch.Tensor]) -> None:
    """A from_pretrained-loadable folder (safetensors), plus extra weights such as the pooler."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {**model.state_dict(), **extra_weights} if extra_weights else None
    model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(folder)
