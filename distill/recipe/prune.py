"""Recipe schema of the `prune` stage: which heads, FFN neurons and layers go, how importance is
scored, and the optional recovery training.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from distill import DistillError
from distill.recipe.base import Strict
from distill.recipe.training import LossConfig, TrainConfig


class HeadPruningConfig(Strict):
    """Which attention heads a prune stage removes: a share chosen by importance, or explicit lists."""

    # Share of ALL the model's heads removed once the stage is done (counting heads removed earlier).
    share: float | None = None
    scope: Literal["global", "layer"] = "global"  # rank heads across layers (Michel et al.) or take `share` of each layer
    per_layer: dict[int, list[int]] | None = None  # {layer: [head, ...]} to remove, original head indices
    # Heads every layer keeps. 0 lets a layer lose all its heads: such models reload only through
    # distill.pruning.load_pruned (transformers' native loading cannot run a 0-head layer).
    min_per_layer: int = Field(1, ge=0)
    normalize: bool = True  # L2-normalise importance per layer before ranking across layers

    @field_validator("share")
    @classmethod
    def _share_range(cls, share: float | None) -> float | None:
        if share is not None and not 0 <= share < 1:
            raise ValueError("must be in [0, 1)")
        return share

    @field_validator("per_layer")
    @classmethod
    def _lists_valid(cls, per_layer: dict[int, list[int]] | None) -> dict[int, list[int]] | None:
        if per_layer is None:
            return None
        if not per_layer:
            raise ValueError("must name at least one layer")
        for layer, heads in per_layer.items():
            if layer < 0 or not heads or any(h < 0 for h in heads) or len(set(heads)) != len(heads):
                raise ValueError(f"layer {layer}: give a layer index >= 0 and a non-empty list of distinct head indices >= 0")
        return per_layer

    @model_validator(mode="after")
    def _one_rule(self) -> HeadPruningConfig:
        if (self.share is None) == (self.per_layer is None):
            raise ValueError("give either share or per_layer")
        return self


class FfnPruningConfig(Strict):
    """FFN (intermediate) neuron pruning."""

    share: float  # of each layer's original neurons, removed once the stage is done
    # `layer`: the same count from every layer (a standard config, loads natively); `global`:
    # lowest scores across layers (per-layer sizes: loads only through distill.pruning.load_pruned).
    scope: Literal["layer", "global"] = "layer"
    method: Literal["taylor", "magnitude"] = "taylor"  # |activation x gradient| on task data, or weight norms

    @field_validator("share")
    @classmethod
    def _share_range(cls, share: float) -> float:
        if not 0 <= share < 1:
            raise ValueError("must be in [0, 1)")
        return share


class LayerPruningConfig(Strict):
    """Which whole transformer layers a prune stage removes, after its heads and FFN neurons: listed,
    or the least important ones."""

    drop: list[int] | None = None  # indices of the stage's input model's layers to remove
    # Remove this many, those whose heads and FFN neurons keep the least importance (as the speed
    # search values layers: unnormalized head scores and FFN scores, half each).
    count: int | None = Field(None, ge=1)

    @field_validator("drop")
    @classmethod
    def _drop_valid(cls, drop: list[int] | None) -> list[int] | None:
        if drop is not None and (not drop or any(i < 0 for i in drop) or len(set(drop)) != len(drop)):
            raise ValueError("give a non-empty list of distinct layer indices >= 0")
        return drop

    @model_validator(mode="after")
    def _one_rule(self) -> LayerPruningConfig:
        if (self.drop is None) == (self.count is None):
            raise ValueError("give either drop or count")
        return self

    @property
    def removed(self) -> int:
        return len(self.drop) if self.drop is not None else self.count

    def check_against(self, layers: int, field: str, source: str) -> None:
        """Refuse, naming `field` (this block) and the input model `source`, what its `layers` cannot take."""
        if bad := [i for i in self.drop or () if i >= layers]:
            raise DistillError(
                f"{field}.drop: layer {bad[0]} is beyond the input's {layers} layers (0..{layers - 1}) in {source}"
            )
        if self.removed >= layers:
            which = "drop" if self.drop is not None else "count"
            raise DistillError(
                f"{field}.{which}: would remove {self.removed} of the input's {layers} layers in {source}; keep at least one"
            )


class ImportanceConfig(Strict):
    """Task data used to score heads and neurons (training split, shuffled with the recipe seed)."""

    batches: int | None = Field(64, gt=0)  # None = the whole training split
    batch_size: int = Field(32, gt=0)  # examples per scoring batch


class RecoveryConfig(Strict):
    """Training after each pruning step."""

    train: TrainConfig = TrainConfig(epochs=1.0)  # the recovery training; epochs default to 1 (not 3), also in a partial block
    distill: bool = True  # distil from the stage's teacher; false: hard labels only
    loss: LossConfig = LossConfig()  # distillation weights, as a distill stage's; used with `distill: true`

    @field_validator("train", mode="before")
    @classmethod
    def _one_epoch_unless_set(cls, train):
        # A partial `train:` block keeps recovery's 1 epoch, not TrainConfig's 3.
        if isinstance(train, dict) and "epochs" not in train:
            return {"epochs": 1.0, **train}
        return train


class SpeedTargetConfig(Strict):
    """Prune to a speed instead of to shares: the stage measures what the shipped artifact costs on
    this machine (the recipe's `benchmark:` sequence length, warm-up, repeats and threads), fits a
    latency model, and keeps the most accurate pruned shape (heads, FFN neurons, whole layers) whose
    measured latency meets every budget."""

    speedup: dict[int, float] | None = None  # {batch size: times faster than `against`}, e.g. {1: 15, 32: 16}
    latency_ms: dict[int, float] | None = None  # {batch size: milliseconds}: absolute budgets instead of speed-ups
    against: str | None = None  # the stage whose artifact is the reference (as it is saved); default: the first teacher stage
    # A later onnx stage: shapes are timed exported and quantized with its settings, the form that
    # ships. None: timed as the pruned torch model (fp32).
    measure_as: str | None = None
    # Shapes at the edge of the budgets (per depth and head count, the most FFN neurons that fit),
    # scored on the selection split as pruned, without training: a cheap, measured ranking.
    screened: int = Field(24, ge=1, le=200)
    candidates: int = Field(3, ge=1, le=10)  # the best screened shapes, then recovered, scored again and re-timed
    min_layers: int = Field(1, ge=1)  # whole layers may go, down to this many
    min_heads_per_layer: int = Field(1, ge=0)  # heads each kept layer keeps

    @field_validator("speedup", "latency_ms")
    @classmethod
    def _positive_budgets(cls, budgets: dict[int, float] | None) -> dict[int, float] | None:
        if budgets is not None and (not budgets or any(b < 1 or not v > 0 for b, v in budgets.items())):
            raise ValueError("give {batch size >= 1: value > 0}, at least one")
        return budgets

    @model_validator(mode="after")
    def _one_kind_of_budget(self) -> "SpeedTargetConfig":
        if (self.speedup is None) == (self.latency_ms is None):
            raise ValueError("give either speedup or latency_ms")
        if self.candidates > self.screened:
            raise ValueError(f"candidates ({self.candidates}) come from the screened shapes ({self.screened}): give candidates <= screened")
        return self

    @property
    def budgets(self) -> dict[int, float]:
        return self.speedup if self.speedup is not None else self.latency_ms


class PruneStage(Strict):
    """Structured pruning: physically remove attention heads, FFN neurons and/or whole layers,
    optionally in several steps with recovery training after each."""

    kind: Literal["prune"]  # picks this stage type
    name: str = "pruned"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    input: str | None = None  # the stage whose model is pruned; default: the previous stage
    # Teacher for recovery distillation; default: the last teacher stage, else the unpruned input.
    teacher: str | None = None
    heads: HeadPruningConfig | None = None  # which attention heads go; None: heads kept
    ffn: FfnPruningConfig | None = None  # which FFN neurons go; None: FFN kept
    layers: LayerPruningConfig | None = None  # which whole layers go; None: every layer kept
    importance: ImportanceConfig = ImportanceConfig()  # the training batches heads and neurons are scored on
    iterations: int = Field(1, ge=1)  # steps to reach the shares (e.g. 2: half the way, then all)
    # Training after each step; with train.keep_best (the default) kept only when it beats the pruned weights
    # on the checkpoint-selection examples (data.holdout_size, else validation). None: no training.
    recovery: RecoveryConfig | None = None
    # Prune to a speed: the stage picks heads, neurons and layers itself (instead of heads / ffn).
    target: SpeedTargetConfig | None = None

    @model_validator(mode="after")
    def _something_to_prune(self) -> PruneStage:
        if self.target is not None:
            if self.heads is not None or self.ffn is not None or self.layers is not None or self.iterations != 1:
                raise ValueError("target: the stage chooses what to prune; leave out heads, ffn, layers and iterations")
            return self
        if self.heads is None and self.ffn is None and self.layers is None:
            raise ValueError("give heads, ffn and/or layers (what to prune), or a speed target")
        if self.iterations > 1 and self.heads is not None and self.heads.per_layer is not None:
            raise ValueError("explicit heads.per_layer lists are removed in one step: set iterations to 1")
        if self.iterations > 1 and self.layers is not None and self.layers.drop is not None:
            raise ValueError("explicit layers.drop lists are removed in one step: set iterations to 1")
        return self
