"""The distillation objective: each term is a plain function, `DistillationLoss` combines them.

Terms (all return a float32 scalar tensor, computed in float32 even under bf16 autocast):

- ``soft_target_kl``   KL(teacher || student) on temperature-softened logits, times T**2
                       (Hinton et al. 2015; DistilBERT's ``alpha_ce`` term).
- ``soft_target_mse``  its regression counterpart (STS-B): MSE between raw logits, no softmax.
- ``hard_label_loss``  cross-entropy on gold labels, or MSE for regression.
- ``hidden_cosine``    DistilBERT's cosine-embedding loss on the last hidden states.
- ``hidden_mse``       TinyBERT's MSE between mapped hidden states (embeddings + layers).
- ``attention_kl``     MiniLM-style KL between attention distributions.

Layer mapping (``layer_map``): ``layer_map[i]`` is the index into the teacher's ``hidden_states``
tuple (index 0 = embeddings, index k = output of teacher layer k) that student layer i (the
student's ``hidden_states[i + 1]``) is trained to match. The embeddings (index 0) always pair
with each other. The attention of student layer i pairs with teacher attention layer
``layer_map[i] - 1``. ``layer_map=None`` means uniform, last-to-last:
``round((i + 1) * n_teacher / n_student)`` (6 -> 3 layers gives [2, 4, 6]).
"""

from distill.training.losses.logits import hard_label_loss, soft_target_kl, soft_target_mse
from distill.training.losses.masks import labelled_positions
from distill.training.losses.objective import DistillationLoss, LossWeights
from distill.training.losses.representations import attention_kl, default_layer_map, hidden_cosine, hidden_mse

__all__ = [
    "soft_target_kl",
    "soft_target_mse",
    "hard_label_loss",
    "labelled_positions",
    "hidden_cosine",
    "hidden_mse",
    "attention_kl",
    "default_layer_map",
    "LossWeights",
    "DistillationLoss",
]
