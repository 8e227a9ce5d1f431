"""An unsupported release of a dependency stops a command with one line, before anything runs."""

from __future__ import annotations

import pytest
import yaml

from distill import DistillError
from distill import machine as versions
from distill.cli import main


def installed_except(name: str, version: str | None):
    real = versions.installed_version
    return lambda package: version if package == name else real(package)


def test_a_version_below_the_supported_range_is_refused_naming_package_version_and_range(monkeypatch):
    monkeypatch.setattr(versions, "installed_version", installed_except("transformers", "4.56.2"))
    with pytest.raises(DistillError, match=r"^transformers 4\.56\.2 is not supported; distill needs transformers>=4\.57 "):
        versions.check_versions()


def test_a_missing_core_dependency_is_named(monkeypatch):
    monkeypatch.setattr(versions, "installed_version", installed_except("accelerate", None))
    with pytest.raises(DistillError, match=r"^accelerate is not installed; distill needs accelerate>=1\.15$"):
        versions.check_versions()


def test_a_development_build_of_a_supported_release_passes(monkeypatch):
    monkeypatch.setattr(versions, "installed_version", installed_except("transformers", "5.25.0.dev0"))
    versions.check_versions()


def test_an_optional_extra_is_checked_only_when_installed(monkeypatch):
    monkeypatch.setattr(versions, "installed_version", installed_except("peft", None))
    versions.check_versions()
    monkeypatch.setattr(versions, "installed_version", installed_except("peft", "0.20.0"))
    with pytest.raises(DistillError, match=r"^peft 0\.20\.0 is not supported; distill needs peft>=0\.21"):
        versions.check_versions()


def test_the_cli_prints_one_line_and_exits_2_on_an_unsupported_version(monkeypatch, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "task": "sst2", "stages": [{"kind": "teacher", "skip_training": True}]}))
    monkeypatch.setattr(versions, "installed_version", installed_except("datasets", "4.4.1"))
    assert main(["validate", str(recipe)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "distill: error: datasets 4.4.1 is not supported; distill needs datasets>=5.0.1 (pip install 'datasets>=5.0.1')\n"
