"""`hccrad run` reuses a stage only when every output it wrote is there unchanged, holds its output folder alone,
records its state in a summary from the start, and turns every fault a user can fix into one line and status 2.

Each fault is injected on a small synthetic clinical-only study (model C, no images); after it, the rerun's
outputs must equal those of an uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.pipeline import run_study


def write_clinical_study(folder, n: int = 90, seed: int = 3):
    """A clinical-only study of ``n`` synthetic patients in six centers (D-F validation), PFS driven by AFP."""
    rng = np.random.default_rng(seed)
    afp = np.round(np.exp(rng.normal(4.5, 2.0, n)), 1)
    child_pugh = rng.choice(["A", "B"], n, p=[0.75, 0.25])
    bclc = rng.choice(["A", "B", "C"], n, p=[0.3, 0.4, 0.3])
    rate = 0.08 * np.exp(0.6 * (afp >= 400) + 0.4 * (child_pugh == "B") + 0.3 * (bclc == "C"))
    progression, censoring = rng.exponential(1 / rate), rng.uniform(6, 40, n)
    table = pd.DataFrame({
        "patient_id": [f"P{k:03d}" for k in range(n)], "center": np.repeat(list("ABCDEF"), n // 6),
        "afp": afp, "child_pugh": child_pugh, "bclc": bclc,
        "treatment": rng.choice(["TACE", "TACE+systemic"], n), "pfs_months": np.round(np.minimum(progression,
                                                                                                 censoring), 2),
        "pfs_event": (progression <= censoring).astype(int)})
    table.to_csv(folder / "clinical.csv", index=False)
    manifest = {"name": "clinical", "clinical_table": "clinical.csv", "require_images": False,
                "columns": {"ct": None, "mask": None, "portal_vein_diameter_mm": None},
                "split": {"validation_centers": ["D", "E", "F"]}, "models": {"models": ["C"]},
                "evaluation": {"n_bootstrap": 10}, "horizons_months": [12.0], "output_dir": "out"}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def _without_times(artifact: dict) -> dict:
    """A model artifact without the times it records (``created``, its lineage's ``date``; also in its base model)
    and the checksum that covers them."""
    kept = {k: v for k, v in artifact.items() if k not in ("created", "checksum")}
    if isinstance(kept.get("lineage"), dict):
        kept["lineage"] = {k: v for k, v in kept["lineage"].items() if k != "date"}
    if isinstance(kept.get("base_model"), dict):
        kept["base_model"] = _without_times(kept["base_model"])
    return kept


def outputs(out) -> dict[str, object]:
    """Every file of the models and evaluation folders (the stages' results), by relative path: the bytes, or for
    a model artifact its content without the times it records (``created``, the lineage's date, and the checksum
    that covers them).
    Figures are left out: matplotlib writes the time into SVGs; the tables they draw are compared."""
    files: dict[str, object] = {}
    for folder in ("models", "evaluation/tables"):
        for path in sorted((out / folder).rglob("*")):
            if not path.is_file():
                continue
            content: object = path.read_bytes()
            if path.parent.name == "models" and path.suffix == ".json" and path.name != "summary.json":
                content = _without_times(json.loads(content))
            files[path.relative_to(out).as_posix()] = content
    return files


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run: its outputs, the truth every faulted run must come back to."""
    folder = tmp_path_factory.mktemp("reference")
    manifest = write_clinical_study(folder)
    result = run_study(manifest)
    assert result.status == "done", result.stopped
    return outputs(folder / "out")


@pytest.fixture
def study(tmp_path, reference_run):
    """A fresh copy of the study, run once (so that every stage has finished outputs to reuse)."""
    manifest = write_clinical_study(tmp_path)
    first = run_study(manifest)
    assert first.status == "done"
    assert outputs(tmp_path / "out") == reference_run
    return manifest, tmp_path / "out"


def statuses(result) -> dict[str, str]:
    return {record.name: record.status for record in result.stages}


def test_a_second_run_reuses_every_stage_and_the_state_records_each_outputs_hash(study):
    manifest, out = study
    again = run_study(manifest)
    assert statuses(again)["fit"] == "reused" and statuses(again)["evaluate"] == "reused"
    state = json.loads((out / "run_state.json").read_text())
    assert state["version"] == 2
    recorded = state["stages"]["fit"]["outputs"]
    assert "models/C.json" in recorded and "models/predictions.csv" in recorded
    import hashlib

    assert recorded["models/C.json"] == hashlib.sha256((out / "models" / "C.json").read_bytes()).hexdigest()
    assert len(state["stages"]["evaluate"]["outputs"]) > 18  # 16 tables, the summary and the figures


def test_a_deleted_model_is_rebuilt_and_the_log_names_it(study, reference_run):
    manifest, out = study
    (out / "models" / "C.json").unlink()
    again = run_study(manifest)
    assert statuses(again)["fit"] == "ran"
    assert outputs(out) == reference_run
    assert f"stage fit runs: its output {out / 'models' / 'C.json'} is missing" in (out / "hccrad-run.log").read_text()


def test_a_deleted_or_edited_evaluation_table_is_rebuilt(study, reference_run):
    manifest, out = study
    (out / "evaluation" / "tables" / "delong.csv").unlink()
    again = run_study(manifest)
    assert statuses(again)["fit"] == "reused" and statuses(again)["evaluate"] == "ran"
    assert outputs(out) == reference_run
    table = out / "evaluation" / "tables" / "brier.csv"
    table.write_text(table.read_text().replace("C,", "X,", 1))
    third = run_study(manifest)
    assert statuses(third)["evaluate"] == "ran"
    assert "brier.csv changed since it was written" in (out / "hccrad-run.log").read_text()
    assert outputs(out) == reference_run


def test_a_corrupt_run_state_is_set_aside_and_the_run_completes(study, reference_run):
    manifest, out = study
    (out / "run_state.json").write_text('{"fit": "abc", ')
    result = run_study(manifest)
    assert result.status == "done"
    assert (out / "run_state.json.corrupt").read_text() == '{"fit": "abc", '
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "done" and any("unreadable" in note for note in summary["notes"])
    assert json.loads((out / "run_state.json").read_text())["version"] == 2
    assert outputs(out) == reference_run


@pytest.mark.parametrize("command", [["features"], ["robustness"], ["fit"], ["evaluate"], ["run"],
                                     ["segment", "prepare"]])
def test_every_writing_command_refuses_a_folder_another_command_holds(tmp_path, command):
    """A live process (another hccrad command) holds the output folder: each stage command stops with one line,
    writes nothing, and leaves the holder's lock in place."""
    manifest = write_clinical_study(tmp_path)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, time\n"
        "from hccrad.pipeline.state import output_lock\n"
        f"with output_lock(pathlib.Path({str(out / 'hccrad.lock')!r}), pathlib.Path({str(out)!r}), "
        "'hccrad evaluate'):\n"
        f"    pathlib.Path({str(ready)!r}).touch()\n"
        "    time.sleep(60)\n")])
    try:
        for _ in range(300):
            if ready.exists():
                break
            time.sleep(0.1)
        before = sorted(p.name for p in out.iterdir())
        result = CliRunner().invoke(app, [*command, str(manifest)], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        line = [line for line in result.output.splitlines() if line.strip()][-1]
        assert line.startswith("error: another hccrad command (hccrad evaluate, pid") and str(holder.pid) in line
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_second_run_on_the_same_folder_stops_with_one_line(study):
    manifest, out = study
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "hccrad.lock").write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                     "started": "2026-12-02T10:00:00"}))
        result = CliRunner().invoke(app, ["run", str(manifest)], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        [line] = [line for line in result.output.splitlines() if line.strip()]
        assert line.startswith("error: another hccrad command (hccrad run, pid") and str(holder.pid) in line \
            and str(out) in line
        assert (out / "hccrad.lock").is_file()  # still the other run's
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale, taken over with a note, and released at the end.
    result = run_study(manifest)
    assert result.status == "done"
    summary = json.loads((out / "run_summary.json").read_text())
    assert any("stale lock" in note and str(holder.pid) in note for note in summary["notes"])
    assert not (out / "hccrad.lock").exists()


def test_the_summary_says_running_until_the_run_ends(study, monkeypatch):
    manifest, out = study
    from hccrad.pipeline import run as run_module

    seen = {}
    original = run_module._evaluate_stage

    def spy(study_, state, result, fitted, n_bootstrap):
        seen["during"] = json.loads((out / "run_summary.json").read_text())["status"]  # what a kill -9 leaves
        return original(study_, state, result, fitted, n_bootstrap)

    monkeypatch.setattr(run_module, "_evaluate_stage", spy)
    (out / "evaluation" / "tables" / "delong.csv").unlink()
    assert run_study(manifest).status == "done"
    assert seen["during"] == "running"
    assert json.loads((out / "run_summary.json").read_text())["status"] == "done"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_report_stage", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_study(manifest)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "interrupted" and "run again to resume" in summary["stopped"]
    assert not (out / "hccrad.lock").exists()


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "the disk is full"),
                                             (errno.EROFS, "the file system is read-only"),
                                             (errno.EACCES, "permission denied")])
def test_a_write_fault_during_fit_is_one_line_and_status_2_and_the_rerun_recovers(study, reference_run,
                                                                                   monkeypatch, code, words):
    manifest, out = study
    (out / "models" / "C.json").unlink()  # so that fit runs
    from hccrad.io import files

    original = files._write_temporary

    def failing(path, data):
        if path.parent.name == "models":
            raise OSError(code, os.strerror(code), str(path))
        return original(path, data)

    monkeypatch.setattr(files, "_write_temporary", failing)
    result = CliRunner().invoke(app, ["run", str(manifest)], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: fit: cannot write ") and words in lines[0]
    assert "Traceback" not in result.output
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "stopped" and summary["stopped"].startswith("fit:")
    monkeypatch.setattr(files, "_write_temporary", original)
    assert run_study(manifest).status == "done"
    assert outputs(out) == reference_run


def test_a_write_fault_in_a_stage_command_is_one_line(study, monkeypatch):
    manifest, out = study
    from hccrad.io import files

    def failing(path, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(files, "_write_temporary", failing)
    result = CliRunner().invoke(app, ["evaluate", str(manifest), "--bootstrap", "10"], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot write ") and "read-only" in result.output


def test_a_group_of_files_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A full disk between the CSV and the Parquet table must not leave a new CSV beside an old Parquet file."""
    from hccrad.io import files

    old = {tmp_path / "features.csv": "old csv", tmp_path / "features.parquet": "old parquet"}
    files.write_atomic_group(old)
    original, calls = files._write_temporary, []

    def second_fails(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(path, data)

    monkeypatch.setattr(files, "_write_temporary", second_fails)
    with pytest.raises(OSError, match="No space"):
        files.write_atomic_group({tmp_path / "features.csv": "new csv", tmp_path / "features.parquet": "new"})
    assert {path.read_text() for path in old} == {"old csv", "old parquet"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.csv", "features.parquet"]  # no temporaries


def test_version_prints_the_version():
    from hccrad import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"hccrad {__version__}"


def test_ctrl_c_prints_how_to_resume_and_exits_130(tmp_path):
    """A real SIGINT to a real `hccrad run` process (Typer's standalone mode used to exit 130 silently)."""
    import signal
    import time

    manifest = write_clinical_study(tmp_path)
    process = subprocess.Popen([sys.executable, "-c", "from hccrad.cli.main import main; main()", "run",
                                str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    summary = tmp_path / "out" / "run_summary.json"
    deadline = time.monotonic() + 60
    while not summary.is_file() and time.monotonic() < deadline:  # inside the run, past the imports
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; run again to resume"
    assert "Traceback" not in err
    assert json.loads(summary.read_text())["status"] == "interrupted"


def test_a_mistyped_validation_center_stops_the_run_before_any_stage(tmp_path):
    """`d` for the table's `D` would put center D's validation patients in the training set."""
    from hccrad.io import ManifestError

    manifest = write_clinical_study(tmp_path)
    settings = yaml.safe_load(manifest.read_text())
    settings["split"] = {"validation_centers": ["d", "E", "F"]}
    manifest.write_text(yaml.safe_dump(settings))
    with pytest.raises(ManifestError, match="validation center 'd' has no patient; the table spells it 'D'"):
        run_study(manifest)
    assert not (tmp_path / "out" / "models").exists()
    result = CliRunner().invoke(app, ["run", str(manifest)], env={"COLUMNS": "400"})
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and line.startswith("error: ") and "'D'" in line
