"""Differences between the supported transformers releases (4.57 and 5.x), in one place."""

from __future__ import annotations

import transformers
from packaging.version import Version

TRANSFORMERS_5 = Version(transformers.__version__).major >= 5


def load_sharded_checkpoint(*args, **kwargs):
    """transformers' own; imported when called: 5.x moved it to trainer_utils, whose import pulls
    in peft and bitsandbytes (seconds at every start of a run that never loads a sharded folder)."""
    try:
        from transformers.trainer_utils import load_sharded_checkpoint as load
    except ImportError:  # 4.57
        from transformers.modeling_utils import load_sharded_checkpoint as load
    return load(*args, **kwargs)


__all__ = ["TRANSFORMERS_5", "load_sharded_checkpoint"]
