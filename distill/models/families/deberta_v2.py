"""DeBERTa-v2 and v3: disentangled attention. Without `share_att_key`, each layer projects the
shared relative-position embeddings with its own pos_key_proj / pos_query_proj, one slice per
head, so those lose the same head slices as key and query. With `share_att_key` the key and query
projections serve both, and slicing them is enough. The head's ContextPooler starts random. v2
checkpoints (not v3) may add a convolution on the first layer's output: that layer then stays."""

from distill.models.families.base import Family

FAMILY = Family(
    name="deberta-v2",
    model_types=("deberta-v2",),
    blocks="encoder.layer",
    heads_module="attention.self",
    query="attention.self.query_proj",
    key="attention.self.key_proj",
    value="attention.self.value_proj",
    position_projections=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
    attention_output="attention.output.dense",
    head_count_attributes=("num_attention_heads",),
    head_width_attributes=("all_head_size",),
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    follows_first_block=("encoder.conv",),
    new_head_modules=("pooler", "classifier"),
    lora_targets=("query_proj", "value_proj"),
)
