"""What every report records about the code that made it: the commit, marked when it was edited."""

import subprocess
from pathlib import Path

from distill.machine import git_commit


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def committed_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "code.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_the_commit_is_the_checkouts_head(tmp_path):
    repo = committed_repo(tmp_path)
    assert git_commit(repo / "pkg") == git(repo, "rev-parse", "HEAD")


def test_edited_tracked_files_mark_the_commit_dirty_and_untracked_ones_do_not(tmp_path):
    repo = committed_repo(tmp_path)
    (repo / "pkg" / "notes.txt").write_text("untracked\n")
    assert not git_commit(repo / "pkg").endswith("+dirty")
    (repo / "pkg" / "code.py").write_text("x = 2\n")
    assert git_commit(repo / "pkg") == git(repo, "rev-parse", "HEAD") + "+dirty"


def test_edits_outside_the_folder_leave_it_clean(tmp_path):
    repo = committed_repo(tmp_path)
    (repo / "README").write_text("a\n")
    git(repo, "add", "README")
    assert git_commit(repo / "pkg") == git(repo, "rev-parse", "HEAD")


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert git_commit(tmp_path) is None
