"""The GLUE table across runs, on small synthetic report.json files (no models, no data)."""

import json
from pathlib import Path

import pytest

from distill import DistillError
from distill.cli import main
from distill.reporting.glue_table import glue_markdown, glue_summary, task_score


def stage(name: str, metrics: dict, seeds: list[dict] | None = None, **fields) -> dict:
    """A report record as distill/reporting/report.py writes it (only the fields the table reads)."""
    record = {"stage": name, "kind": "teacher" if name == "teacher" else "distill", "metric": next(iter(metrics)),
              "metric_value": next(iter(metrics.values())), "metrics": metrics, **fields}
    if seeds:
        record["seeds"] = [{"seed": i + 1, "metric_value": next(iter(m.values())), "metrics": m} for i, m in enumerate(seeds)]
        record["metric_std"] = 0.0
    return record


def write_run(root: Path, task: str, records: list[dict], folder: str | None = None) -> Path:
    run_dir = root / (folder or f"glue_{task}")
    run_dir.mkdir(parents=True)
    report = {"recipe": run_dir.name, "task": task, "metric": records[0]["metric"], "command": f"distill run {task}.yaml",
              "machine": "test machine", "packages": {}, "date": "2026-12-02T10:00:00+00:00", "stages": records}
    (run_dir / "report.json").write_text(json.dumps(report))
    return run_dir


def rows_by_stage(summary: dict) -> dict:
    return {row["stage"]: row for row in summary["rows"]}


@pytest.fixture
def two_runs(tmp_path) -> list[Path]:
    """RTE and SST-2: teacher 70 / 90 (macro 80), student 63 / 89 (macro 76), baseline on RTE only."""
    rte = write_run(tmp_path, "rte", [
        stage("teacher", {"accuracy": 0.70}, params=22_000_000, size_bytes=88 * 2**20, latency_ms_bs1=20.0,
              speedup_vs_teacher_bs1=1.0),
        stage("student", {"accuracy": 0.63}, params=17_000_000, size_bytes=66 * 2**20, latency_ms_bs1=10.0,
              speedup_vs_teacher_bs1=2.0),
        stage("baseline", {"accuracy": 0.60}),
    ])
    sst2 = write_run(tmp_path, "sst2", [
        stage("teacher", {"accuracy": 0.90}, params=22_000_000, size_bytes=88 * 2**20, latency_ms_bs1=22.0,
              speedup_vs_teacher_bs1=1.0),
        stage("student", {"accuracy": 0.89}, params=17_000_000, size_bytes=66 * 2**20, latency_ms_bs1=8.0,
              speedup_vs_teacher_bs1=2.75),
    ])
    return [rte, sst2]


def test_mrpc_score_is_the_mean_of_f1_and_accuracy():
    assert task_score("mrpc", {"f1": 0.90, "accuracy": 0.80}) == pytest.approx(85.0)


def test_stsb_score_is_the_mean_of_pearson_and_spearman():
    assert task_score("stsb", {"pearson": 0.88, "spearmanr": 0.86}) == pytest.approx(87.0)


def test_cola_score_is_the_matthews_correlation():
    assert task_score("cola", {"matthews_correlation": 0.45}) == pytest.approx(45.0)


def test_a_missing_metric_key_is_an_error_naming_it():
    with pytest.raises(DistillError, match="spearmanr"):
        task_score("stsb", {"pearson": 0.88})


def test_multi_seed_score_is_the_mean_and_std_over_seeds_of_the_per_seed_scores(tmp_path):
    # Per-seed MRPC scores 85, 84, 83: mean 84, sample std 1; the record's own metrics (the first
    # seed's artifact) must not be what is scored.
    seeds = [{"f1": 0.90, "accuracy": 0.80}, {"f1": 0.88, "accuracy": 0.80}, {"f1": 0.86, "accuracy": 0.80}]
    run = write_run(tmp_path, "mrpc", [stage("teacher", {"f1": 0.9, "accuracy": 0.9}),
                                       stage("student", {"f1": 0.90, "accuracy": 0.80}, seeds=seeds)])
    summary = glue_summary([run])
    score = rows_by_stage(summary)["student"]["scores"]["mrpc"]
    assert (score["mean"], score["std"], score["n"]) == (pytest.approx(84.0), pytest.approx(1.0), 3)
    assert "| KD student | 84.00 | 93.3 | 84.00 ± 1.00 |" in glue_markdown(summary)


def test_macro_is_a_dash_when_a_row_misses_a_task(two_runs):
    summary = glue_summary(two_runs)
    baseline = rows_by_stage(summary)["baseline"]
    assert baseline["macro"] is None and baseline["percent_of_teacher"] is None
    assert baseline["scores"]["sst2"] is None
    assert "| no-KD baseline | – | – | 60.00 | – |" in glue_markdown(summary)


def test_macro_and_percent_of_teacher_are_over_all_tasks(two_runs):
    rows = rows_by_stage(glue_summary(two_runs))
    assert rows["teacher"]["macro"] == pytest.approx(80.0)  # (70 + 90) / 2
    assert rows["student"]["macro"] == pytest.approx(76.0)  # (63 + 89) / 2
    assert rows["student"]["percent_of_teacher"] == pytest.approx(95.0)  # 76 / 80


def test_size_and_speed_are_means_over_tasks(two_runs):
    markdown = glue_markdown(glue_summary(two_runs))
    # student: 17M params, 66 MiB, (10 + 8) / 2 = 9 ms, (2 + 2.75) / 2 = 2.375× the teacher
    assert "| KD student | 17.00 | 66.00 | 9.00 | 2.38× |" in markdown
    assert "| no-KD baseline | – | – | – | – |" in markdown


def test_rows_follow_the_table_order_and_the_transfer_row_appears_only_when_run(two_runs, tmp_path):
    assert [row["stage"] for row in glue_summary(two_runs)["rows"]] == [
        "teacher", "student", "baseline", "baseline_teacher_init", "student_int8", "compressed_int8"]
    run = write_run(tmp_path, "wnli", [stage("teacher", {"accuracy": 0.56}), stage("student_transfer", {"accuracy": 0.56})])
    assert "student_transfer" in rows_by_stage(glue_summary([run]))


def test_tasks_are_in_distilberts_column_order(tmp_path):
    runs = [write_run(tmp_path, task, [stage("teacher", metrics)]) for task, metrics in
            (("wnli", {"accuracy": 0.5}), ("stsb", {"pearson": 0.8, "spearmanr": 0.8}), ("cola", {"matthews_correlation": 0.4}))]
    summary = glue_summary(runs)
    assert list(summary["tasks"]) == ["cola", "stsb", "wnli"]
    assert "| model | macro | % teacher | CoLA (MCC) | STS-B (Pearson/Spearman) | WNLI (acc) |" in glue_markdown(summary)


def test_cli_prints_the_tables_and_writes_json_and_markdown(two_runs, tmp_path, capsys):
    out_json, out_md = tmp_path / "benchmarks" / "glue.json", tmp_path / "glue.md"
    args = ["report", "--glue", *map(str, two_runs), "--json", str(out_json), "--markdown", str(out_md)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| model | macro | % teacher | RTE (acc) | SST-2 (acc) |" in printed
    assert "| teacher | 80.00 | 100.0 | 70.00 | 90.00 |" in printed
    assert "mean over tasks" in printed and "mean of F1 and accuracy" in printed
    summary = json.loads(out_json.read_text())
    assert list(summary["tasks"]) == ["rte", "sst2"]
    assert summary["tasks"]["rte"]["report_path"] == str(two_runs[0] / "report.json")
    assert summary["tasks"]["rte"]["report"]["task"] == "rte"
    assert summary["rows"][0]["stage"] == "teacher" and summary["rows"][0]["macro"] == pytest.approx(80.0)
    assert summary["command"].startswith("distill report --glue ")
    assert {"macro_definition", "rendered_at", "commit"} <= set(summary)
    assert out_md.read_text().strip() == printed.strip()


def test_each_runs_commit_is_named_under_the_table(tmp_path):
    run = write_run(tmp_path, "rte", [stage("teacher", {"accuracy": 0.7})])
    report = json.loads((run / "report.json").read_text())
    (run / "report.json").write_text(json.dumps(report | {"commit": "0123456789abcdef0123+dirty"}))
    assert "`distill run rte.yaml`; test machine; commit 0123456789ab+dirty" in glue_markdown(glue_summary([run]))


def test_cli_accepts_report_json_paths(two_runs, capsys):
    assert main(["report", "--glue", *(str(run / "report.json") for run in two_runs)]) == 0
    assert "| teacher | 80.00 |" in capsys.readouterr().out


def test_a_folder_without_report_json_exits_2_naming_it(two_runs, tmp_path, capsys):
    empty = tmp_path / "glue_cola"
    empty.mkdir()
    assert main(["report", "--glue", str(two_runs[0]), str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "report.json" in err and len(err.strip().splitlines()) == 1


def test_two_reports_of_the_same_task_exit_2(two_runs, tmp_path, capsys):
    again = write_run(tmp_path, "rte", [stage("teacher", {"accuracy": 0.7})], folder="glue_rte_again")
    assert main(["report", "--glue", *map(str, two_runs), str(again)]) == 2
    err = capsys.readouterr().err
    assert str(again / "report.json") in err and "'rte'" in err and len(err.strip().splitlines()) == 1


def test_a_rerun_replaces_the_stages_it_ran_and_is_named_under_the_table(two_runs, tmp_path):
    rerun = write_run(tmp_path, "rte", [stage("baseline", {"accuracy": 0.66}), stage("pruned_qat", {"accuracy": 0.64})],
                      folder="glue_rte_qat_rerun")
    summary = glue_summary(two_runs, reruns=[rerun])
    rows = rows_by_stage(summary)
    assert rows["baseline"]["scores"]["rte"]["mean"] == pytest.approx(66.0)  # replaced: was 60
    assert rows["pruned_qat"]["scores"]["rte"]["mean"] == pytest.approx(64.0)  # added
    assert rows["student"]["scores"]["rte"]["mean"] == pytest.approx(63.0)  # kept from the first report
    assert summary["tasks"]["rte"]["reruns"][0]["stages"] == ["baseline", "pruned_qat"]
    assert f"its stages baseline, pruned_qat from the re-run `{rerun / 'report.json'}`" in glue_markdown(summary)


def test_a_rerun_of_a_task_without_its_report_exits_2(two_runs, tmp_path, capsys):
    rerun = write_run(tmp_path, "mrpc", [stage("teacher", {"f1": 0.8, "accuracy": 0.7})], folder="glue_mrpc_rerun")
    assert main(["report", "--glue", *map(str, two_runs), "--rerun", str(rerun)]) == 2
    err = capsys.readouterr().err
    assert str(rerun / "report.json") in err and "'mrpc'" in err and len(err.strip().splitlines()) == 1


def test_a_report_of_a_task_outside_glue_exits_2(tmp_path, capsys):
    run = write_run(tmp_path, "wnut17", [stage("teacher", {"f1": 0.4})])
    assert main(["report", "--glue", str(run)]) == 2
    assert "not a GLUE task" in capsys.readouterr().err
