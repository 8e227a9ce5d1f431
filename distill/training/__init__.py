"""Training: one Accelerate loop (`loop`) with resumable checkpoints (`checkpoints`), the
per-batch steps (`steps`), the distillation loss terms (`losses`), the masked-LM objectives
(`mlm`), evaluation (`evaluation`), the teacher-logit cache (`teacher_cache`) and transfer sets
(`transfer`)."""
