"""Recipe schema of the `publish` stage: a model card and a Hub upload (or a dry run)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from distill.recipe.base import Strict

HUB_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")  # ORG/NAME


class PublishStage(Strict):
    """Push an evaluated artifact of this run to the Hugging Face Hub with a generated model card."""

    kind: Literal["publish"]  # picks this stage type
    name: str = "publish"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    repo_id: str  # ORG/NAME on the Hub
    stage: str | None = None  # whose artifact is pushed; default: the last earlier stage holding a model
    private: bool = False  # applies when the repo is created; an existing repo keeps its visibility
    revision: str | None = None  # branch to push to (created when missing); default: main
    license: str = "apache-2.0"  # the card's license id
    include_logs: bool = False  # also upload training logs (train_log.jsonl)
    dry_run: bool = False  # write the exact upload folder to <run>/<name>/upload/ and push nothing

    @field_validator("repo_id")
    @classmethod
    def _repo_id_valid(cls, repo_id: str) -> str:
        if not HUB_REPO_ID.fullmatch(repo_id) or ".." in repo_id:
            raise ValueError("must be ORG/NAME (letters, digits, '-', '_', '.')")
        return repo_id
