"""Truncated SVD of one weight matrix: W ≈ U·V as two thin factors, and the modules that run them.

A factorized layer keeps the name of the layer it replaces and saves its "up" factor as `weight`
(out × rank), so plain `from_pretrained` on a factorized folder fails loudly on the shape instead
of silently loading random weights where the factors were: it must go through `load_factorized`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distill import DistillError


class FactorizedLinear(nn.Module):
    """y = up(down(x)) + b with down: in → rank (no bias) and up: rank → out (the bias).
    Replaces an nn.Linear(in, out): 2·rank·(in+out) FLOPs per token instead of 2·in·out."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.weight = nn.Parameter(torch.empty(out_features, rank))  # the up factor (see the module docstring)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.down(hidden_states), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.bias is not None}"


class FactorizedEmbedding(nn.Module):
    """ALBERT-style word embeddings: a (vocab × rank) lookup followed by a rank → hidden projection."""

    def __init__(self, num_embeddings: int, embedding_dim: int, rank: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.rank, self.padding_idx = num_embeddings, embedding_dim, rank, padding_idx
        self.weight = nn.Parameter(torch.empty(num_embeddings, rank).normal_(std=0.02))  # the lookup factor
        self.project = nn.Linear(rank, embedding_dim, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.project(F.embedding(input_ids, self.weight, self.padding_idx))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}, padding_idx={self.padding_idx}"


def singular_values(weight: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(weight.detach().double())


def choose_rank(values: torch.Tensor, *, energy: float | None = None, rank: int | None = None, ratio: float | None = None) -> int:
    """The rank one rule asks for, given a matrix's singular values (descending):
    - energy: the smallest rank whose singular values hold that share of the sum of their squares;
    - rank: that rank, at most full rank;
    - ratio: that share of full rank (rounded up)."""
    full = values.numel()
    if sum(x is not None for x in (energy, rank, ratio)) != 1:
        raise DistillError("give exactly one of energy, rank or ratio")
    if rank is not None:
        if rank < 1:
            raise DistillError(f"rank: must be >= 1 (got {rank})")
        return min(rank, full)
    if ratio is not None:
        if not 0 < ratio <= 1:
            raise DistillError(f"ratio: must be in (0, 1] (got {ratio})")
        return max(1, min(full, math.ceil(ratio * full)))
    if not 0 < energy <= 1:
        raise DistillError(f"energy: must be in (0, 1] (got {energy})")
    squares = values.double() ** 2
    kept = torch.cumsum(squares, 0) / squares.sum()
    # The first rank whose kept share reaches `energy` (a tiny tolerance absorbs float rounding at 1.0).
    return min(full, int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=kept.dtype)).item()) + 1)


def saves_parameters(rank: int, rows: int, cols: int) -> bool:
    """Whether two factors of this rank are smaller than the dense (rows × cols) matrix."""
    return rank * (rows + cols) < rows * cols


def _thin_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with left @ right the best rank-`rank` approximation of `weight` (Eckart–Young);
    the singular values are split evenly (√S on each side) so both factors train alike."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def factorize_linear(linear: nn.Linear, rank: int) -> FactorizedLinear:
    """The rank-`rank` truncated SVD of `linear` as a FactorizedLinear (same dtype and device)."""
    full = min(linear.in_features, linear.out_features)
    if not 1 <= rank <= full:
        raise DistillError(f"rank: must be in 1..{full} for a {linear.in_features} → {linear.out_features} linear layer (got {rank})")
    up, down = _thin_factors(linear.weight, rank)
    factorized = FactorizedLinear(linear.in_features, linear.out_features, rank, bias=linear.bias is not None)
    factorized.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        factorized.weight.copy_(up)
        factorized.down.weight.copy_(down)
        if linear.bias is not None:
            factorized.bias.copy_(linear.bias)
    return factorized


def factorize_embedding(embedding: nn.Embedding, rank: int) -> FactorizedEmbedding:
    """E (vocab × hidden) ≈ A (vocab × rank) · B (rank × hidden) by truncated SVD."""
    full = min(embedding.num_embeddings, embedding.embedding_dim)
    if not 1 <= rank <= full:
        raise DistillError(f"rank: must be in 1..{full} for a {embedding.num_embeddings} × {embedding.embedding_dim} embedding (got {rank})")
    lookup, project = _thin_factors(embedding.weight, rank)
    factorized = FactorizedEmbedding(embedding.num_embeddings, embedding.embedding_dim, rank, embedding.padding_idx)
    factorized.to(device=embedding.weight.device, dtype=embedding.weight.dtype)
    with torch.no_grad():
        factorized.weight.copy_(lookup)
        factorized.project.weight.copy_(project.T)
    return factorized
