"""Low-rank factorization of a whole classifier: pick the target layers of every transformer block
(and optionally the word embeddings), choose each one's rank, replace it by its truncated SVD, and
record the per-module ranks in the config so `load_factorized` can rebuild the shapes.

A layer whose chosen rank would not save parameters (rank·(in+out) ≥ in·out) stays dense: its
factors would be larger and slower than the matrix they approximate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from distill import DistillError
from distill.lowrank.svd import (
    FactorizedEmbedding,
    FactorizedLinear,
    choose_rank,
    factorize_embedding,
    factorize_linear,
    saves_parameters,
    singular_values,
)
from distill.models.families import family_of, submodule, transformer_blocks

FACTORIZATION_KEY = "distill_factorization"
FORMAT_VERSION = 1

# Recipe names of the layers of a transformer block (the architecture layer's roles). In a family
# with one fused qkv projection, "query", "key" and "value" all name it.
BLOCK_MODULES = ("query", "key", "value", "qkv", "attention_output", "ffn_in", "ffn_out")
FUSED_PARTS = ("query", "key", "value")


@dataclass(frozen=True)
class RankRule:
    """One of: kept-energy share, fixed rank, share of full rank (see `choose_rank`)."""

    energy: float | None = None
    rank: int | None = None
    ratio: float | None = None

    def pick(self, module: nn.Module) -> int:
        return choose_rank(singular_values(module.weight), energy=self.energy, rank=self.rank, ratio=self.ratio)


@dataclass
class FactorizationResult:
    ranks: dict[str, int] = field(default_factory=dict)  # module path -> rank, factorized by this call
    kept_dense: dict[str, int] = field(default_factory=dict)  # selected, but the rank would not save parameters


def target_linears(model: nn.Module, modules: Sequence[str], field: str = "modules") -> dict[str, nn.Linear]:
    """{path in the model: nn.Linear} of the named block layers (already factorized or emptied
    layers are skipped)."""
    unknown = [m for m in modules if m not in BLOCK_MODULES]
    if unknown:
        raise DistillError(f"{field}: unknown module(s) {unknown}; choose from {', '.join(BLOCK_MODULES)}")
    family = family_of(model, field)
    roles = family.projection_roles()
    paths = []
    for name in modules:
        path = roles.get(name) or (family.qkv if name in FUSED_PARTS else None)
        if path is None:
            raise DistillError(f"{field}: {family.name} blocks have no '{name}' layer; they have {', '.join(roles)}")
        paths += [path] if path not in paths else []
    prefix, blocks = transformer_blocks(model, field)
    found = {}
    for i, block in enumerate(blocks):
        for path in paths:
            module = submodule(block, path)
            if type(module) is nn.Linear and min(module.in_features, module.out_features) > 0:
                found[f"{prefix}.{i}.{path}"] = module
    return found


def word_embedding_path(model: nn.Module) -> str:
    embedding = model.get_input_embeddings()
    return next(name for name, module in model.named_modules() if module is embedding)


def replace_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def factorize_model(
    model: nn.Module,
    *,
    modules: Sequence[str] = (),
    linear_rule: RankRule | None = None,
    embedding_rule: RankRule | None = None,
) -> FactorizationResult:
    """Factorize, in place, the named block layers of every block (`modules`, e.g. ["ffn_in",
    "ffn_out"]) with `linear_rule`, and the word embeddings with `embedding_rule`. The config's
    map is updated (`distill_factorization`). Returns what was factorized and what stayed dense."""
    result = FactorizationResult()
    targets: dict[str, tuple[nn.Module, RankRule]] = {}
    if linear_rule is not None:
        targets.update({path: (m, linear_rule) for path, m in target_linears(model, modules).items()})
    if embedding_rule is not None:
        embedding = model.get_input_embeddings()
        if isinstance(embedding, nn.Embedding):  # already factorized: left as it is
            targets[word_embedding_path(model)] = (embedding, embedding_rule)
    for path, (module, rule) in targets.items():
        rank = rule.pick(module)
        rows, cols = module.weight.shape
        if not saves_parameters(rank, rows, cols):
            result.kept_dense[path] = rank
            continue
        if isinstance(module, nn.Embedding):
            replace_module(model, path, factorize_embedding(module, rank))
        else:
            replace_module(model, path, factorize_linear(module, rank))
        result.ranks[path] = rank
    sync_factorization_config(model)
    return result


def factorized_ranks(model: nn.Module) -> dict[str, int]:
    """{module path: rank} of every factorized layer of the model."""
    return {name: m.rank for name, m in model.named_modules() if isinstance(m, (FactorizedLinear, FactorizedEmbedding))}


def sync_factorization_config(model: nn.Module) -> None:
    """Write the per-module ranks into the config (`distill_factorization`), so they travel with
    `save_pretrained`; a model without factorized layers carries no such key."""
    ranks = factorized_ranks(model)
    if ranks:
        setattr(model.config, FACTORIZATION_KEY, {"format": FORMAT_VERSION, "ranks": ranks})
    elif hasattr(model.config, FACTORIZATION_KEY):
        delattr(model.config, FACTORIZATION_KEY)


def linear_flops_per_token(model: nn.Module) -> int:
    """FLOPs per token of the encoder's matrix products with weights, computed from the layer
    shapes (2 per multiply-add): every linear layer of every block, plus the factorized word
    embeddings' projection (a dense embedding is a lookup, 0). Not counted: attention's
    sequence-length-dependent score and weighted-sum products (factorization leaves them as they
    are), and the pooler and classifier, which run once per sequence."""
    _, blocks = transformer_blocks(model)
    total, counted = 0, set()
    for block in blocks:
        for module in block.modules():  # parents come before their children
            if isinstance(module, FactorizedLinear):
                total += 2 * module.rank * (module.in_features + module.out_features)
                counted.add(module.down)
            elif isinstance(module, nn.Linear) and module not in counted:
                total += 2 * module.in_features * module.out_features
    embedding = model.get_input_embeddings()
    if isinstance(embedding, FactorizedEmbedding):
        total += 2 * embedding.rank * embedding.embedding_dim
    return total
