"""BERT and the encoders built like it: RoBERTa, XLM-R, CamemBERT, ELECTRA (whose optional
embedding projection sits before the blocks) and MiniLM (a BERT checkpoint)."""

from distill.models.families.base import Family

FAMILY = Family(
    name="bert",
    model_types=("bert", "roberta", "xlm-roberta", "camembert", "electra"),
    blocks="encoder.layer",
    heads_module="attention.self",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    legacy_pruned_heads=True,
    head_count_attributes=("num_attention_heads",),
    head_width_attributes=("all_head_size",),
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    new_head_modules=("classifier",),
    lora_targets=("query", "value"),
)
