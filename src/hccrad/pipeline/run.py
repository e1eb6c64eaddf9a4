"""`hccrad run`: validate -> (segment) -> features -> fit -> evaluate -> report, reusing valid earlier work.

Each stage records the fingerprint of its inputs and the SHA-256 of every file it wrote in
``<output_dir>/run_state.json`` once it has finished (:mod:`hccrad.pipeline.state`); a later run reuses a stage
only when its inputs are unchanged and every recorded output is there with its recorded hash, and otherwise
logs why it runs again. The features stage reuses finished cases on its own (content fingerprints), so after a
crash or after adding patients only the new cases are computed. One run at a time holds the output folder
(``hccrad.lock``). Every run appends to ``hccrad-run.log`` and writes ``run_summary.json`` at its start
(``status: running``) and at its end (``done``, ``stopped`` or ``interrupted``), with what ran, what was reused,
which cases failed and why, and the seconds each stage took.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.io.config import ManifestError
from hccrad.io.files import ensure_writable_dir, write_atomic
from hccrad.io.manifest import Study, ValidationIssue, load_study, use_predicted_masks
from hccrad.pipeline.state import RunState, output_lock

log = logging.getLogger("hccrad.run")


@dataclass
class StageRecord:
    """One stage of a run: its name, status (ran, reused, skipped, failed), seconds and what happened."""
    name: str
    status: str  # ran, reused, skipped, failed
    seconds: float = 0.0
    detail: str = ""


@dataclass
class RunResult:
    """What a run did: its stages, the failed cases with their stage and reason, the report, and why it stopped."""
    study: Study
    stages: list[StageRecord] = field(default_factory=list)
    failed_cases: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    #: Why the run stopped before the report ("<stage>: <reason>"), or None.
    stopped: str | None = None
    #: The error that stopped it, for the caller to tell a fault the user can fix (status 2) from others.
    error: BaseException | None = None
    #: ``done``, ``stopped`` or ``interrupted`` once the run has ended.
    status: str = "running"
    #: Which engine computed which feature classes and image types (:func:`hccrad.features.extract.engine_plan`).
    features_engine: dict[str, Any] | None = None


def _digest(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            digest.update(part.read_bytes() if part.is_file() else b"<missing>")
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def _setup_log(log_path: Path) -> logging.Handler:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def run_study(manifest: Path, scheduler: str | None = None, n_bootstrap: int | None = None,
              progress: Callable[[str, int, int | None], None] | None = None) -> RunResult:
    """Run the whole study for ``manifest``; see the module docstring.

    Parameters
    ----------
    manifest
        The study YAML.
    scheduler
        Dask scheduler address for the features stage (default: a local cluster).
    n_bootstrap
        Bootstrap resamples of the evaluation's confidence intervals (default: the manifest's
        ``evaluation: {n_bootstrap}``, 500).
    progress
        ``progress(stage, done, total)`` for long stages.
    """
    study = load_study(manifest)
    ensure_writable_dir(study.config.output_path)
    paths = study.config.layout
    check_stage_settings(study)
    try:
        refuse_study_errors(study, manifest)
    except ManifestError:
        write_atomic(paths.manifest_issues, study.issues_table().to_csv(index=False))
        raise
    from hccrad.pipeline.stages import refuse_external_fit

    refuse_external_fit(study)
    with output_lock(paths.run_lock, study.config.output_path) as lock_note:
        return _run_locked(study, manifest, scheduler, n_bootstrap, progress, lock_note)


def _write_summary(result: RunResult, manifest: Path, started: str, notes: list[str]) -> None:
    paths = result.study.config.layout
    summary = {
        "manifest": str(Path(manifest).resolve()),
        "status": result.status,
        "pid": os.getpid(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if result.status != "running" else None,
        "stages": [record.__dict__ for record in result.stages],
        "failed_cases": result.failed_cases,
        "report": str(result.report) if result.report else None,
        "stopped": result.stopped,
        "features_engine": result.features_engine,
        "notes": notes,
    }
    write_atomic(paths.run_summary, json.dumps(summary, indent=2, default=str))


def _run_locked(study: Study, manifest: Path, scheduler, n_bootstrap, progress, lock_note) -> RunResult:
    paths = study.config.layout
    handler = _setup_log(paths.run_log)
    result = RunResult(study)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    notes = [lock_note] if lock_note else []
    try:
        _write_summary(result, manifest, started, notes)  # a killed run is visible as one that never finished
        state = RunState(paths.run_state)
        if state.note:
            notes.append(state.note)
        log.info("run of %s: %d rows, %d valid patients, %d errors", manifest, study.n_rows, len(study.patients),
                 len(study.errors))
        result.failed_cases += [{"patient_id": i.patient_id, "stage": "manifest", "error": str(i)}
                                for i in study.errors]
        write_atomic(paths.manifest_issues, study.issues_table().to_csv(index=False))
        if study.config.require_images and study.patients:
            from hccrad.pipeline.stages import write_acquisition

            write_acquisition(study)
        from hccrad.pipeline.stages import summarize_study, write_study_summary

        summary = summarize_study(study)
        write_study_summary(study, summary)
        for warning in summary.warnings:
            log.warning("study: %s", warning)
        result.stages.append(StageRecord("validate", "ran", 0.0,
                                         f"{len(study.patients)} valid patients, {len(study.errors)} errors"
                                         + (f", {len(summary.warnings)} plausibility warnings (see "
                                            "validation/summary.md)" if summary.warnings else "")))
        _segment_stage(study, result)
        table = _features_stage(study, state, result, scheduler, progress)
        _robustness_stage(study, result, table, scheduler, progress)
        fitted = _fit_stage(study, state, result, table)
        _evaluate_stage(study, state, result, fitted, n_bootstrap)
        _report_stage(study, result, manifest)
        result.status = "done"
    except KeyboardInterrupt as exc:
        result.stopped = "interrupted (Ctrl-C); run again to resume"
        result.status, result.error = "interrupted", exc
        raise
    except Exception as exc:  # a stage failed: the summary says which and why, the caller exits non-zero
        stage = result.stages[-1].name if result.stages and result.stages[-1].status == "failed" else "run"
        result.stopped = f"{stage}: {_reason(exc)}"
        result.status, result.error = "stopped", exc
        log.exception("run stopped at %s", stage)
    finally:
        try:
            _write_summary(result, manifest, started, notes)
        except OSError as exc:  # the disk filled or the folder became read-only: the run's own error says so
            log.error("could not write %s: %s", paths.run_summary, exc)
            if result.error is None:
                result.status, result.error = "stopped", exc
                result.stopped = f"run: {_reason(exc)}"
        log.info("summary: %s", json.dumps([record.__dict__ for record in result.stages], default=str))
        log.removeHandler(handler)
        handler.close()
    return result


def refuse_study_errors(study: Study, manifest: Path) -> None:
    """A :class:`ManifestError` (one line, status 2) for every error that concerns the whole study rather than
    one row: a stage section, the clinical table's header or columns, a split naming a center the table does
    not have. A run must not go on with such a study: a mistyped validation center would put its patients in
    the training set."""
    errors = [issue for issue in study.errors if issue.row is None]
    if errors:
        raise ManifestError(f"{manifest}: " + "; ".join(f"{issue.field}: {issue.message}" for issue in errors))


def check_stage_settings(study: Study) -> None:
    """Validate the stage sections of the YAML (``segmentation``, ``features``, ``models``, ``evaluation``) with
    their own models, before any stage runs; each problem joins the study's issues as an error."""
    from pydantic import ValidationError

    from hccrad.evaluate.config import EvaluationConfig
    from hccrad.features.config import FeatureConfig
    from hccrad.io.config import describe_validation_error
    from hccrad.report.config import ReportConfig
    from hccrad.segment.nnunet import SegmentationConfig
    from hccrad.survival.config import ModelConfig

    sections = (("segmentation", SegmentationConfig), ("features", FeatureConfig), ("models", ModelConfig),
                ("evaluation", EvaluationConfig), ("report", ReportConfig))
    for section, model in sections:
        try:
            config = model.model_validate(getattr(study.config, section))
            if section == "features" and study.config.require_images:
                params = config.radiomics_params(study.config.base_dir)  # PyRadiomics' schema, and label
                if config.engine != "pyradiomics":
                    from hccrad.features.engine import check_params

                    # what the fast engine cannot reproduce (auto leaves LBP to PyRadiomics), before any case runs
                    check_params(params, allow_pyradiomics_types=config.engine == "auto")
        except ValidationError as exc:
            for line in describe_validation_error(exc, model, section):
                study.issues.append(ValidationIssue(None, None, section, line))
        except Exception as exc:  # a missing or invalid parameter file
            study.issues.append(ValidationIssue(None, None, section, _validation_message(exc)))


def _validation_message(error: Exception) -> str:
    """pydantic's multi-line report on one line, without its documentation links."""
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip() and not line.strip().startswith("For further information")]
    return "; ".join(lines)


def _reason(error: BaseException) -> str:
    """One line for an error: its message, or its type when it has none."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text or type(error).__name__


def _timed(result: RunResult, name: str):
    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()
            log.info("stage %s: start", name)
            return self

        def __exit__(self, kind, value, traceback):
            if kind is not None:
                detail = "interrupted (Ctrl-C)" if issubclass(kind, KeyboardInterrupt) else _reason(value)
                result.stages.append(StageRecord(name, "failed", time.perf_counter() - self.start, detail))
                log.error("stage %s failed: %s", name, detail)
            return False

    return _Timer()


def _segment_stage(study: Study, result: RunResult) -> None:
    """Give every case without a mask its predicted mask: one predicted earlier (``hccrad segment predict`` or an
    earlier run), else one predicted now when a trained model is configured (``segmentation: {model: ...}``)."""
    if not study.config.require_images:
        result.stages.append(StageRecord("segment", "skipped", 0.0, "clinical-only study"))
        return
    missing = [p for p in study.patients if p.ct is not None and not p.has_mask]
    if not missing:
        result.stages.append(StageRecord("segment", "skipped", 0.0, "every case has a mask"))
        return
    reused = use_predicted_masks(study)
    todo = [record for record in missing if not record.has_mask]
    if not todo:
        result.stages.append(StageRecord("segment", "reused", 0.0, f"0 segmented, {len(reused)} reused"))
        return
    if not study.config.segmentation.get("model"):
        result.failed_cases += [{"patient_id": p.patient_id, "stage": "segment", "error": "no mask and no "
                                 "segmentation model configured"} for p in todo]
        result.stages.append(StageRecord("segment", "skipped", 0.0,
                                         f"{len(todo)} cases without a mask and no segmentation model"
                                         + (f"; {len(reused)} predicted masks reused" if reused else "")))
        return
    from hccrad.segment.nnunet import SegmentationConfig, predict_cases

    config = SegmentationConfig.model_validate(study.config.segmentation)
    with _timed(result, "segment") as timer:
        subset = Study(study.config, todo, [], len(todo))
        written = predict_cases(subset, config, study.config.resolve(config.model))
    for record in todo:
        record.mask = written.get(record.patient_id)
    result.stages.append(StageRecord("segment", "ran" if written else "reused", time.perf_counter() - timer.start,
                                     f"{len(written)} segmented, {len(reused)} reused"))


def _features_stage(study, state, result, scheduler, progress) -> pd.DataFrame:
    if not study.config.require_images:
        result.stages.append(StageRecord("features", "skipped", 0.0, "clinical-only study: no images"))
        return study.table()
    from hccrad.features import extract_features

    with _timed(result, "features") as timer:
        run = extract_features(study, scheduler=scheduler,
                               progress=(lambda done, total: progress("features", done, total)) if progress else None)
    status = "ran" if run.computed else "reused"
    from hccrad.features.extract import describe_plan

    result.features_engine = run.engine_plan
    result.stages.append(StageRecord("features", status, time.perf_counter() - timer.start,
                                     f"{len(run.computed)} computed, {len(run.reused)} reused, "
                                     f"{len(run.failures)} failed; {describe_plan(run.engine_plan)}"))
    result.failed_cases += [{"patient_id": row["patient_id"], "stage": "features",
                             "error": f"{row['error_type']}: {row['error']}"} for _, row in run.failures.iterrows()]
    return run.table


def _robustness_stage(study, result, table, scheduler, progress) -> None:
    """Feature robustness, when the manifest turns it on: the perturbed cases are cached like the features'."""
    from hccrad.features.config import FeatureConfig

    if not study.config.require_images or FeatureConfig.model_validate(study.config.features).robustness is None:
        return
    from hccrad.features.robustness import extract_robustness

    with _timed(result, "robustness") as timer:
        run = extract_robustness(study, table, scheduler,
                                 progress=(lambda done, total: progress("robustness", done, total))
                                 if progress else None)
    passes = int(run.table["passes"].sum())
    result.stages.append(StageRecord("robustness", "ran" if run.computed else "reused",
                                     time.perf_counter() - timer.start,
                                     f"{len(run.patients)} patients, {len(run.computed)} perturbed cases computed, "
                                     f"{len(run.reused)} reused, {len(run.failures)} failed; {passes} of "
                                     f"{len(run.table)} features pass"))
    result.failed_cases += [{"patient_id": f"{row['patient_id']} (perturbation {row['perturbation']})",
                             "stage": "robustness", "error": f"{row['error_type']}: {row['error']}"}
                            for row in run.failures]


def _fit_stage(study, state, result, table):
    from hccrad.pipeline.stages import fit_study, robustness_filter
    from hccrad.survival import ModelConfig, load_models

    out_dir = study.config.layout.models_dir
    config = ModelConfig.for_study(study.config)
    robustness = robustness_filter(study, table)
    fingerprint = _digest(pd.util.hash_pandas_object(table, index=True).sum().item(), config.model_dump(mode="json"),
                          study.config.horizons_months,
                          None if robustness is None else {k: v for k, v in robustness.items() if k != "icc"})
    why = state.why_not_reusable("fit", fingerprint)
    if why is None:
        fitted = load_models(out_dir)
        result.stages.append(StageRecord("fit", "reused", 0.0, f"{len(fitted)} models unchanged"))
        return fitted
    log.info("stage fit runs: %s", why)
    state.forget("fit")
    with _timed(result, "fit") as timer:
        fitted_study = fit_study(study, table, out_dir)
    state.done("fit", fingerprint, [out_dir])
    result.failed_cases += [{"patient_id": row["patient_id"], "stage": f"fit ({row['model']})", "error": row["error"]}
                            for _, row in fitted_study.scoring_errors.iterrows()]
    detail = ", ".join(f"{name}: {len(model.covariates_)} factors" for name, model in fitted_study.models.items())
    if fitted_study.skipped:
        detail += "; skipped " + ", ".join(f"{k} ({v})" for k, v in fitted_study.skipped.items())
    result.stages.append(StageRecord("fit", "ran", time.perf_counter() - timer.start, detail))
    return fitted_study.models


def _evaluate_stage(study, state, result, fitted, n_bootstrap) -> None:
    from hccrad.evaluate import EvaluationSettings
    from hccrad.pipeline.stages import evaluate_fitted

    paths = study.config.layout
    settings = EvaluationSettings.from_study(study.config, n_bootstrap)
    fingerprint = _digest(paths.predictions, settings.__dict__,
                          {name: _digest(paths.model_artifact(name)) for name in sorted(fitted)})
    why = state.why_not_reusable("evaluate", fingerprint)
    if why is None:
        result.stages.append(StageRecord("evaluate", "reused", 0.0, "predictions unchanged"))
        return
    log.info("stage evaluate runs: %s", why)
    state.forget("evaluate")
    with _timed(result, "evaluate") as timer:
        evaluation = evaluate_fitted(study, paths.models_dir, paths.evaluation_dir, n_bootstrap, fitted)
    state.done("evaluate", fingerprint, [paths.evaluation_dir])
    result.stages.append(StageRecord("evaluate", "ran", time.perf_counter() - timer.start,
                                     f"{len(evaluation.tables)} tables, {len(evaluation.figures)} figure files"))


def _report_stage(study, result, manifest) -> None:
    from hccrad.report import build_report

    with _timed(result, "report") as timer:
        result.report = build_report(study, Path(manifest), result.stages, result.failed_cases)
    result.stages.append(StageRecord("report", "ran", time.perf_counter() - timer.start, str(result.report)))
