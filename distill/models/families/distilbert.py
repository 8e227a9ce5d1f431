"""DistilBERT: BERT's blocks with other names, the output projection inside the attention module,
no token_type_ids, and a `pre_classifier` layer in its sequence-classification head."""

from distill.models.families.base import Family

FAMILY = Family(
    name="distilbert",
    model_types=("distilbert",),
    blocks="transformer.layer",
    heads_module="attention",
    query="attention.q_lin",
    key="attention.k_lin",
    value="attention.v_lin",
    attention_output="attention.out_lin",
    output_inside_heads_module=True,
    legacy_pruned_heads=True,
    head_count_attributes=("n_heads",),
    head_width_attributes=("dim",),
    ffn_in="ffn.lin1",
    ffn_out="ffn.lin2",
    intermediate_size_key="hidden_dim",
    layer_count_key="n_layers",
    head_count_key="n_heads",
    head_modules=("pre_classifier", "classifier"),
    new_head_modules=("pre_classifier", "classifier"),
    takes_token_type_ids=False,
    lora_targets=("q_lin", "v_lin"),
)
