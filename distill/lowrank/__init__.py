"""Low-rank compression: LoRA fine-tuning, SVD factorization of linear layers and word
embeddings, and vocabulary trimming.

    model = merge_lora(train(add_lora(model, LoraSettings(rank=8))))   # a plain model again
    factorize_model(model, modules=["ffn_in", "ffn_out"], linear_rule=RankRule(energy=0.9),
                    embedding_rule=RankRule(rank=128))                  # W ≈ U·V, E ≈ A·B
    model.save_pretrained(folder)          # per-module ranks travel in config.json
    model = load_factorized(folder)        # the loader for factorized folders (also pruned ones)
    model, tokenizer = trim_vocabulary(model, tokenizer, tokens_to_keep(tokenizer, counts))

Loading: a factorized folder loads only through `load_factorized` (plain `from_pretrained`
fails on the factor shapes; `distill.quantize.artifacts.load_task_model` hands off to it), e.g.
`pipeline("text-classification", model=load_factorized(DIR), tokenizer=DIR)`. A trimmed
vocabulary is a standard config and tokenizer: `from_pretrained` and `pipeline(model=DIR)` work.
"""

from distill.lowrank.factorize import (
    FACTORIZATION_KEY,
    RankRule,
    factorize_model,
    factorized_ranks,
    linear_flops_per_token,
    target_linears,
)
from distill.lowrank.loading import load_factorized
from distill.lowrank.lora import add_lora, merge_lora
from distill.lowrank.svd import FactorizedEmbedding, FactorizedLinear, choose_rank, factorize_embedding, factorize_linear
from distill.lowrank.vocab import InputIdMap, token_counts, tokens_to_keep, trim_vocabulary

__all__ = [
    "FACTORIZATION_KEY",
    "FactorizedEmbedding",
    "FactorizedLinear",
    "InputIdMap",
    "RankRule",
    "add_lora",
    "choose_rank",
    "factorize_embedding",
    "factorize_linear",
    "factorize_model",
    "factorized_ranks",
    "linear_flops_per_token",
    "load_factorized",
    "merge_lora",
    "target_linears",
    "token_counts",
    "tokens_to_keep",
    "trim_vocabulary",
]
