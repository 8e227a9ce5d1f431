"""Publish one evaluated artifact of a run to the Hugging Face Hub.

The upload is always staged first: the artifact's files (minus training logs and partials), the
README.md card and the run's recipe go into one folder. A dry run leaves that folder behind; a
real push uploads exactly that folder, so the two cannot differ. The token is read by
huggingface_hub itself (HF_TOKEN or the login cache) and is never written or printed by us.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from distill import DistillError
from distill.publish.card import fmt_metric, render_card
from distill.publish.run_info import (
    RunInfo,
    artifact_files,
    artifact_metrics,
    default_stage,
    load_run,
    require_evaluation,
)
from distill.recipe import HUB_REPO_ID

WRITTEN_BY_US = {"README.md", "recipe.yaml"}


@dataclass
class PushResult:
    repo_id: str
    stage: str
    files: list[str]  # paths inside the repo
    folder: Path | None = None  # the dry run's folder
    commit_url: str | None = None
    revision: str | None = None


def check_repo_id(repo_id: str, where: str = "--repo-id") -> None:
    if not HUB_REPO_ID.fullmatch(repo_id or "") or ".." in repo_id:
        raise DistillError(f"{where}: '{repo_id}' is not ORG/NAME (letters, digits, '-', '_', '.')")


def recipe_license(run: RunInfo, stage: str) -> str | None:
    """The license a publish stage of the run's recipe gives for this stage (or for its default)."""
    publish = [s for s in run.recipe.get("stages", []) if s.get("kind") == "publish" and s.get("license")]
    chosen = [s for s in publish if s.get("stage") in (stage, None)]
    return (chosen or publish or [{}])[0].get("license")


def stage_upload(run: RunInfo, stage: str, repo_id: str, dest: Path, *, license: str, include_logs: bool = False,
                 revision: str | None = None, template_path: str | Path | None = None) -> list[str]:
    """Write everything the repo will hold into `dest`; returns the paths, sorted."""
    source = run.folder(stage)
    for rel in artifact_files(source, include_logs):
        if rel in WRITTEN_BY_US:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target)
    card = render_card(run, stage, repo_id, license=license, revision=revision, template_path=template_path)
    card.save(dest / "README.md")
    (dest / "recipe.yaml").write_text(run.recipe_text, encoding="utf-8")
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    stage: str | None = None,
    private: bool = False,
    revision: str | None = None,
    dry_run_dir: str | Path | None = None,
    license: str | None = None,
    include_logs: bool = False,
    before: str | None = None,
    endpoint: str | None = None,
    template_path: str | Path | None = None,
) -> PushResult:
    """Publish `stage` of the run in `run_dir` (default: its last stage with a model, or the last
    one before the stage `before`). Refuses an artifact without its evaluation."""
    check_repo_id(repo_id)
    run = load_run(run_dir)
    stage = stage or default_stage(run, before=before)
    require_evaluation(run, stage)
    license = license or recipe_license(run, stage) or "apache-2.0"
    options = dict(license=license, include_logs=include_logs, revision=revision, template_path=template_path)
    if dry_run_dir is not None:
        dest = Path(dry_run_dir)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise DistillError(f"--dry-run {dest}: exists and is not an empty folder")
        dest.mkdir(parents=True, exist_ok=True)
        files = stage_upload(run, stage, repo_id, dest, **options)
        return PushResult(repo_id, stage, files, folder=dest, revision=revision)
    api, token = hub_api(endpoint)
    record = run.records[stage]
    metrics, _ = artifact_metrics(record)
    score = f"{record['metric']} {fmt_metric(metrics.get(record['metric']))}"
    message = f"distill: {run.recipe.get('name', run.run_dir.name)}/{stage}, {score}"
    with tempfile.TemporaryDirectory(prefix="distill-push-") as tmp:
        files = stage_upload(run, stage, repo_id, Path(tmp), **options)
        commit_url = upload_folder(api, token, Path(tmp), repo_id, private=private, revision=revision, message=message)
    return PushResult(repo_id, stage, files, commit_url=commit_url, revision=revision)


def hub_api(endpoint: str | None = None):
    """An HfApi for the endpoint in use (argument, else $HF_ENDPOINT read now, else the Hub)."""
    from huggingface_hub import HfApi, constants, get_token

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    if offline or constants.HF_HUB_OFFLINE:
        raise DistillError("pushing needs the network but HF_HUB_OFFLINE=1 is set: unset it, or use --dry-run DIR")
    token = get_token()
    if not token:
        raise DistillError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (or use --dry-run DIR)")
    return HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None), token


def request_errors() -> tuple[type[Exception], ...]:
    """What a failed Hub request raises, on every huggingface_hub release. HfHubHTTPError derives
    from its HTTP library's HTTPError: requests' (hub 0.x; all requests errors are OSErrors) or
    httpx's (hub 1.x+; also the base of its connection and timeout errors, which are not). OSError
    also covers OfflineModeIsEnabled and hf_xet's ConnectionError; ValueError, malformed answers."""
    from huggingface_hub.utils import HfHubHTTPError

    return (OSError, ValueError, *HfHubHTTPError.__bases__)


def upload_folder(api, token: str, folder: Path, repo_id: str, *, private: bool, revision: str | None, message: str) -> str:
    errors = request_errors()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision, commit_message=message)
    except (*errors, RuntimeError) as err:
        # A failed LFS upload comes wrapped: RuntimeError("Error while uploading '<file>' ...") from the cause.
        wrapped = isinstance(err, RuntimeError) and not isinstance(err, errors)
        if wrapped and not isinstance(err.__cause__, errors):
            raise
        parts = [err, err.__cause__] if wrapped else [err]
        lines = [_first_line(e) for e in parts]
        if server := getattr(parts[-1], "server_message", None):  # HfHubHTTPError: the Hub's own words
            lines.append(f"({_first_line(server)})")
        # Server messages do not carry the token, but scrub it anyway: it must never reach a log.
        detail = " ".join(lines).replace(token, "***")
        raise DistillError(f"push to {repo_id} at {api.endpoint} failed: {detail}") from None
    return str(info.commit_url)


def _first_line(err: BaseException | str) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
