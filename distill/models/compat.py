"""Differences between the supported transformers releases (4.57 and 5.x), in one place."""

from __future__ import annotations

import transformers
from packaging.version import Version

TRANSFORMERS_5 = Version(transformers.__version__).major >= 5

try:  # 5.x moved it out of modeling_utils
    from transformers.trainer_utils import load_sharded_checkpoint
except ImportError:  # 4.57
    from transformers.modeling_utils import load_sharded_checkpoint

__all__ = ["TRANSFORMERS_5", "load_sharded_checkpoint"]
