"""Loading models and tokenizers safely: packaged aliases, safetensors only unless a recipe allows
pickle, one-line errors. Only shapes transformers rebuilds itself load here; our pruned and
factorized artifacts load through distill.quantize.artifacts.load_task_model."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from distill import DistillError
from distill.data.tasks import TaskSpec
from distill.models.architectures import task_model_class
from distill.models.families import BY_MODEL_TYPE
from distill.models.sources import check_weights_format, resolve_model_path
from distill.recipe import ModelSource


def label_config(task: TaskSpec) -> dict:
    """Config kwargs that make `pipeline()` print label names and treat regression right."""
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    names = list(task.label_names)
    labels = {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    # problem_type is a sequence-classification setting; token classifiers have one loss.
    return labels if task.is_token_classification else {**labels, "problem_type": "single_label_classification"}


def load_classifier(
    source: str,
    task: TaskSpec,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
    attn_implementation: str | None = None,
    new_head_ok: bool = False,
) -> PreTrainedModel:
    """A classifier for `task` (one label per input, or one tag per token). `new_head_ok` (a recipe's starting model) lets a head of
    another size be replaced by a fresh one; our own artifacts must load exactly, so it is off."""
    path = resolve_model_path(source)
    check_weights_format(path, allow_pickle)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        return task_model_class(task).from_pretrained(
            path,
            revision=revision,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            ignore_mismatched_sizes=new_head_ok,
            **label_config(task),
            **kwargs,
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise DistillError(f"model '{source}': cannot load ({str(err).splitlines()[0]})") from None


def load_model_source(source: ModelSource, task: TaskSpec, *, load=None, **kwargs) -> PreTrainedModel:
    """The recipe's starting model; `load` replaces load_classifier (stages pass one that also reads
    our pruned and factorized artifacts)."""
    return (load or load_classifier)(
        source.model,
        task,
        allow_pickle=source.allow_pickle,
        trust_remote_code=source.trust_remote_code,
        revision=source.revision,
        new_head_ok=True,
        **kwargs,
    )


MISSING_TOKENIZER_HINT = "tokenizer files missing? save the tokenizer beside the model"


def load_tokenizer(source: str, *, trust_remote_code: bool = False, revision: str | None = None):
    path = resolve_model_path(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise DistillError(f"tokenizer of '{source}': cannot load ({str(err).splitlines()[0]})") from None
    except TypeError:  # transformers 4.x on a folder without tokenizer files: vocab_file is None
        raise DistillError(f"tokenizer of '{source}': no vocabulary ({MISSING_TOKENIZER_HINT})") from None
    # transformers 5 builds a tokenizer from config.json alone when the folder has no tokenizer files:
    # special tokens only, so every word becomes [UNK] and the model is scored on noise.
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise DistillError(f"tokenizer of '{source}': no vocabulary, only {len(tokenizer)} special tokens ({MISSING_TOKENIZER_HINT})")
    _inputs_the_model_takes(tokenizer, Path(path))
    return tokenizer


def _inputs_the_model_takes(tokenizer, folder: Path) -> None:
    """No token_type_ids for a family that takes none (DistilBERT, ModernBERT), whatever tokenizer
    class the checkpoint ships: a BERT tokenizer beside a DistilBERT makes them, and its forward
    refuses them."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return
    family = BY_MODEL_TYPE.get(config.get("model_type")) if isinstance(config, dict) else None
    if family is not None and not family.takes_token_type_ids:
        tokenizer.model_input_names = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
        # Saved with the tokenizer, so the artifacts' tokenizers make them no more in plain transformers (pipeline()).
        tokenizer.init_kwargs["model_input_names"] = list(tokenizer.model_input_names)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_size_bytes(folder: Path) -> int:
    """Bytes of the weight files in a saved model folder (what a user downloads for inference)."""
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.suffix in {".safetensors", ".bin", ".onnx"})


def save_model(model: PreTrainedModel, tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
