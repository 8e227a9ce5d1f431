"""General (task-agnostic) distillation on raw text, DistilBERT's original recipe: a corpus cut
into blocks (corpus), dynamic masking and fixed-mask perplexity (masking), MLM teachers with a
checked head (mlm_models) and the objective (loss). The stages `mlm_head` and `general_distill`
are in distill/stages/general.py, their recipe schema in distill/schema_general.py."""
