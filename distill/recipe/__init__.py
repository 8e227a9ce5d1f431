"""The recipe: one YAML file that says what a run does, validated by the pydantic schema in this
package (the single source of truth). One module per technique holds its stages' schema; `schema`
assembles the `Recipe`, `loading` reads a file with dotted overrides. Import from here."""

from distill.recipe.base import Strict
from distill.recipe.data import AugmentConfig, DataConfig, TransferConfig
from distill.recipe.distill import BaselineStage, DistillStage, TeacherStage
from distill.recipe.general import CorpusConfig, GeneralDistillStage, GeneralLossConfig, GeneralStudentConfig, MlmHeadStage
from distill.recipe.loading import apply_override, dump_recipe, load_recipe, validate_recipe
from distill.recipe.lowrank import FactorizeStage, LinearFactorization, LoraSettings, RankRule, TrimVocabStage
from distill.recipe.prune import (
    FfnPruningConfig,
    HeadPruningConfig,
    ImportanceConfig,
    LayerPruningConfig,
    PruneStage,
    RecoveryConfig,
)
from distill.recipe.publish import HUB_REPO_ID, PublishStage
from distill.recipe.quantize import BnbStage, CastStage, OnnxStage, QatStage, check_levels
from distill.recipe.schema import DEFAULT_STAGE_NAMES, BenchmarkConfig, Recipe, Stage, fingerprint
from distill.recipe.training import LossConfig, ModelSource, StudentConfig, TrainConfig

__all__ = [
    "AugmentConfig", "BaselineStage", "BenchmarkConfig", "BnbStage", "CastStage", "CorpusConfig", "DataConfig",
    "DEFAULT_STAGE_NAMES", "DistillStage", "FactorizeStage", "FfnPruningConfig", "GeneralDistillStage",
    "GeneralLossConfig", "GeneralStudentConfig", "HeadPruningConfig", "HUB_REPO_ID", "ImportanceConfig",
    "LayerPruningConfig", "LinearFactorization", "LossConfig", "LoraSettings", "MlmHeadStage", "ModelSource", "OnnxStage",
    "PruneStage", "PublishStage", "QatStage", "RankRule", "Recipe", "RecoveryConfig", "Stage", "Strict", "StudentConfig",
    "TeacherStage", "TrainConfig", "TransferConfig", "TrimVocabStage", "apply_override", "check_levels",
    "dump_recipe", "fingerprint", "load_recipe", "validate_recipe",
]
