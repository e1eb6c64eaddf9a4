"""The `hccrad` command line."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import sys
import warnings
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hccrad import __version__
from hccrad.io.config import ManifestError
from hccrad.io.errors import InputError
from hccrad.io.files import ensure_writable_dir, write_atomic, write_fault_message

app = typer.Typer(
    name="hccrad",
    help="3D synergistic tumor-liver radiomics for predicting progression-free survival in HCC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
stdout = Console()


def progress_bar() -> Progress:
    """A progress bar for long stages (description, bar, count, elapsed time)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


#: What the running command holds until it returns (the output folder's lock), released by ``_one_line_errors``.
_HELD_FOR_COMMAND: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar("held", default=None)


def _one_line_errors(command):
    """Print an :class:`~hccrad.io.errors.InputError` (bad input, unwritable output, altered model, a held output
    folder, an unreachable Dask scheduler) or a write fault the user can fix (full disk, read-only file system, no
    permission) as one line and exit with status 2, instead of a traceback."""

    @functools.wraps(command)
    def run_command(*args, **kwargs):
        try:
            with contextlib.ExitStack() as held:
                token = _HELD_FOR_COMMAND.set(held)
                try:
                    return command(*args, **kwargs)
                finally:
                    _HELD_FOR_COMMAND.reset(token)
        except InputError as exc:
            raise fail(str(exc)) from exc
        except OSError as exc:
            message = write_fault_message(exc)
            if message is None:
                message = _unexpected(exc)
            raise fail(message) from exc
        except (typer.Exit, typer.Abort, click.exceptions.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # never a traceback on the console: one line, the details with HCCRAD_DEBUG=1
            raise fail(_unexpected(exc), code=3) from exc

    return run_command


def _unexpected(error: BaseException) -> str:
    """One line for an error hccrad has no message of its own for (a file the OS refuses, a library's error): its
    kind, its text and how to see the traceback; the traceback itself is printed with ``HCCRAD_DEBUG=1``."""
    import os
    import traceback

    if os.environ.get("HCCRAD_DEBUG"):
        traceback.print_exception(error)
    text = " ".join(str(error).split()) or "no message"
    return (f"{type(error).__name__}: {text} (unexpected: run again with HCCRAD_DEBUG=1 for the traceback, and "
            "report it if the input looks right)")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: <message>`` on one line and return the exit (status ``code``) to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # one line, however long
    return typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        stdout.print(f"hccrad {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       callback=_print_version)) -> None:
    """3D synergistic tumor-liver radiomics for predicting progression-free survival in HCC."""


@app.command()
@_one_line_errors
def synth(
    out: Path = typer.Option(Path("hccrad-demo"), "--out", "-o", help="Folder to write the cohort into."),
    n_patients: int = typer.Option(120, "--patients", "-n", min=6, help="Number of patients."),
    seed: int = typer.Option(7, help="Random seed; the same seed writes the same cohort."),
    full_resolution: bool = typer.Option(False, "--full-resolution", help="Paper-like 512x512 matrices."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Worker processes (0: one per core)."),
) -> None:
    """Generate a synthetic multi-center HCC cohort (CTs, masks, clinical table, true outcome model)."""
    from hccrad.synth import CohortSpec, generate_cohort

    spec = CohortSpec(n_patients=n_patients, seed=seed, full_resolution=full_resolution, n_jobs=jobs or None)
    ensure_writable_dir(out)
    with progress_bar() as bar:
        task = bar.add_task("synthesizing patients", total=n_patients)
        manifest = generate_cohort(out, spec, progress=lambda done, total: bar.update(task, completed=done))
    stdout.print(f"cohort written: {manifest}")


def _print_issues(study) -> None:
    if not study.issues:
        return
    table = Table(title="Manifest problems", show_lines=False)
    for column in ("severity", "row", "patient", "field", "problem"):
        table.add_column(column)
    for issue in study.issues:
        style = "red" if issue.severity == "error" else "yellow"
        table.add_row(f"[{style}]{issue.severity}[/]", str(issue.row or "-"), escape(issue.patient_id or "-"),
                      escape(issue.field), escape(issue.message))
    stdout.print(table)


@app.command()
@_one_line_errors
def validate(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    report: Path | None = typer.Option(None, help="Also write every issue to this CSV."),
    acquisition: bool = typer.Option(True, help="Read the CT headers and print the per-center table."),
) -> None:
    """Check a study manifest: every problem with its row, field and what was expected."""
    from hccrad.io.manifest import load_study

    try:
        study = load_study(manifest)
    except ManifestError as exc:
        raise fail(str(exc)) from exc
    from hccrad.pipeline.run import check_stage_settings

    check_stage_settings(study)
    from hccrad.io.manifest import ValidationIssue
    from hccrad.pipeline.stages import summarize_study, write_study_summary

    summary = summarize_study(study)
    study.issues.extend(ValidationIssue(None, None, "study", warning, "warning") for warning in summary.warnings)
    _print_issues(study)
    if report is not None:
        study.issues_table().to_csv(report, index=False)
    if study.patients:
        from rich.markdown import Markdown

        stdout.print(Markdown(summary.markdown))
        try:
            stdout.print(f"summary written: {write_study_summary(study, summary)}")
        except OSError as exc:  # validating must not need a writable output folder
            console.print(f"[yellow]summary not saved[/]: {escape(str(exc))}")
    table = study.table()
    stdout.print(
        f"[bold]{study.config.name}[/]: {study.n_rows} rows, {len(study.patients)} valid patients "
        f"({(table['dataset'] == 'training').sum() if len(table) else 0} training, "
        f"{(table['dataset'] == 'validation').sum() if len(table) else 0} validation), "
        f"{len(study.errors)} errors, {len(study.warnings)} warnings"
    )
    if acquisition and study.patients and study.config.require_images:
        from hccrad.io.files import OutputError
        from hccrad.pipeline.stages import write_acquisition

        try:
            summary = write_acquisition(study)
        except OutputError as exc:  # validating must not need a writable output folder
            console.print(f"[yellow]acquisition table not saved[/]: {exc}")
            from hccrad.io.acquisition import acquisition_table, center_acquisition_summary

            summary = center_acquisition_summary(acquisition_table(study.patients, study.config.dicom_series))
        rich_table = Table(title="CT acquisition per center (Supplementary Table 1)")
        for column in summary.columns:
            rich_table.add_column(str(column))
        for _, row in summary.iterrows():
            rich_table.add_row(*("" if value is None else str(value) for value in row))
        stdout.print(rich_table)
    if study.errors:
        raise typer.Exit(1)


def _load_study_or_exit(manifest: Path):
    from hccrad.io.manifest import load_study
    from hccrad.pipeline.run import check_stage_settings, refuse_study_errors

    try:
        study = load_study(manifest)
        check_stage_settings(study)
        refuse_study_errors(study, manifest)  # the whole study is affected: nothing to run on
    except ManifestError as exc:
        raise fail(str(exc)) from exc
    _hold_output_folder(study)
    if study.errors:
        console.print(f"[yellow]{len(study.errors)} manifest errors[/]: those rows are left out "
                      f"(run `hccrad validate {manifest}` for the list)")
    return study


def _hold_output_folder(study) -> None:
    """Take the study output folder's lock (``hccrad.lock``, as ``hccrad run``) until the command returns: a second
    command on the same folder stops with one line naming the holder."""
    import click

    from hccrad.pipeline.state import output_lock

    held = _HELD_FOR_COMMAND.get()
    if held is None:
        return
    context = click.get_current_context(silent=True)
    command = context.command_path if context is not None else "hccrad"
    folder = study.config.output_path
    folder.mkdir(parents=True, exist_ok=True)
    held.enter_context(output_lock(study.config.layout.run_lock, folder, command))


@app.command()
@_one_line_errors
def features(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    scheduler: str | None = typer.Option(None, help="Address of an existing Dask scheduler (tcp://host:8786)."),
    out: Path | None = typer.Option(None, help="Output folder (default: <output_dir>/features)."),
) -> None:
    """Compute Tumor and Rliver features of every case not yet done, into one cohort table."""
    from hccrad.features.memory import imports_uncollected

    with imports_uncollected():
        from hccrad.features import extract_features

        study = _load_study_or_exit(manifest)
    with progress_bar() as bar:
        task = bar.add_task("extracting features", total=None)
        run = extract_features(study, out_dir=out, scheduler=scheduler,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    from hccrad.features.extract import describe_plan

    stdout.print(describe_plan(run.engine_plan))
    stdout.print(f"features: {len(run.computed)} computed, {len(run.reused)} reused, "
                 f"{len(run.failures)} failed; table: {run.out_dir / 'features.parquet'}")
    for _, failure in run.failures.iterrows():
        console.print(f"[red]failed[/] {failure['patient_id']}: {failure['error_type']}: {failure['error']}")
    for _, warning in run.qc_warnings.iterrows():
        console.print(f"[yellow]QC warning[/] {warning['patient_id']}: {escape(str(warning['error']))}")
    if "PV_max_diameter_mm" in run.table:
        unmeasured = [str(p) for p in run.table.index[run.table["PV_max_diameter_mm"].isna()]]
        if unmeasured:
            console.print(f"[yellow]note[/] portal-vein diameter not measured for {len(unmeasured)} case(s) "
                          f"({', '.join(unmeasured[:5])}{', ...' if len(unmeasured) > 5 else ''}): no "
                          "portal_vein_diameter_mm in the clinical table and no label-3 voxel in the mask, so "
                          "PV_max_diameter_mm and the Rliver volume / PV diameter ratio are missing for them",
                          soft_wrap=True)
    if len(run.failures):
        raise typer.Exit(code=1)


@app.command()
@_one_line_errors
def robustness(
    manifest: Path = typer.Argument(..., help="The study YAML (with features: {robustness: ...})."),
    scheduler: str | None = typer.Option(None, help="Address of an existing Dask scheduler (tcp://host:8786)."),
) -> None:
    """Perturb a subset of the training patients, compute their features and each feature's ICC."""
    from hccrad.features.robustness import extract_robustness
    from hccrad.pipeline.stages import study_table

    study = _load_study_or_exit(manifest)
    table = study_table(study)
    with progress_bar() as bar:
        task = bar.add_task("perturbed cases", total=None)
        run = extract_robustness(study, table, scheduler,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    settings = run.table["icc_form"].iloc[0]
    stdout.print(f"robustness: {len(run.patients)} patients x {int(run.table['n_perturbations'].iloc[0])} "
                 f"perturbations ({len(run.computed)} computed, {len(run.reused)} reused, {len(run.failures)} "
                 f"failed); {int(run.table['passes'].sum())} of {len(run.table)} features pass the {settings} "
                 f"threshold; table: {study.config.layout.robustness_table}")
    for failure in run.failures:
        console.print(f"[red]failed[/] {failure['patient_id']} perturbation {failure['perturbation']}: "
                      f"{failure['error_type']}: {failure['error']}")
    if run.failures:
        raise typer.Exit(code=1)


@app.command()
@_one_line_errors
def fit(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    features: Path | None = typer.Option(None, help="Cohort feature table (default: <output_dir>/features)."),
    out: Path | None = typer.Option(None, help="Output folder (default: <output_dir>/models)."),
) -> None:
    """Fit the C, T, T&L and C-T&L Cox models on the training set and score every patient."""
    from hccrad.pipeline.stages import fit_study, refuse_external_fit, study_table

    study = _load_study_or_exit(manifest)
    refuse_external_fit(study)
    table = study_table(study, features)
    out_dir = out or study.config.layout.models_dir
    with console.status("fitting models (selection on the training set only)"):
        fitted = fit_study(study, table, out_dir)
    for name, model in fitted.models.items():
        stdout.print(f"{name}: {len(model.covariates_)} factors, training Harrell C "
                     f"{model.training_['harrell_c']:.3f} ({model.training_['n']} patients, "
                     f"{model.training_['events']} events)")
    for name, reason in fitted.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {reason}")
    for _, row in fitted.scoring_errors.iterrows():
        console.print(f"[red]not scored[/] {row['patient_id']} ({row['model']}): {row['error']}")
    stdout.print(f"models written to {out_dir}")


@app.command()
@_one_line_errors
def evaluate(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    models: Path | None = typer.Option(None, help="Folder of `hccrad fit` (default: <output_dir>/models)."),
    out: Path | None = typer.Option(None, help="Output folder (default: <output_dir>/evaluation)."),
    bootstrap: int | None = typer.Option(None, help="Bootstrap resamples for the IPCW AUC, C-index and NRI/IDI CIs "
                                         "(default: the manifest's evaluation: {n_bootstrap}, 500)."),
) -> None:
    """Every statistic and figure of the results: ROC/AUC, DeLong, calibration, subgroups, risk groups."""
    from hccrad.pipeline.stages import evaluate_fitted

    study = _load_study_or_exit(manifest)
    out_dir = out or study.config.layout.evaluation_dir
    with console.status("evaluating models"):
        evaluation = evaluate_fitted(study, models, out_dir, bootstrap)
    stdout.print(f"evaluation: {len(evaluation.tables)} tables, {len(evaluation.figures)} figure files in {out_dir}")


@app.command("external-validate")
@_one_line_errors
def external_validate(
    manifest: Path = typer.Argument(..., help="The study YAML of the external cohort (every patient is external)."),
    models: Path = typer.Option(..., "--models", help="The models folder to validate (written by `hccrad fit`)."),
    update: str | None = typer.Option(None, help="Also update the models' calibration on these patients: baseline, "
                                                 "slope or both (written to external/updated_models)."),
    bootstrap: int | None = typer.Option(None, help="Bootstrap resamples for confidence intervals (default: the "
                                         "manifest's evaluation: {n_bootstrap}, 500)."),
    update_bootstrap: int = typer.Option(200, min=0, help="Bootstrap resamples of the updated calibration's "
                                                          "optimism."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler address for the features."),
) -> None:
    """Validate saved models, frozen, on another hospital's patients: features as the models record, every
    statistic of the evaluation, an HTML/PDF report; optionally update their calibration."""
    from hccrad.pipeline.external import external_validate as run_external

    study = _load_study_or_exit(manifest)
    with progress_bar() as bar:
        task = bar.add_task("features (as the models record)", total=None)
        result = run_external(study, models, bootstrap, update, scheduler,
                              progress=lambda done, total: bar.update(task, completed=done, total=total),
                              update_bootstrap=update_bootstrap)
    concordance = result.evaluation.tables["concordance"]
    for _, row in concordance[concordance["dataset"] == "validation"].iterrows():
        stdout.print(f"{row['model']}: Harrell C {row['harrell_c']:.3f} ({row['harrell_ci_low']:.3f}-"
                     f"{row['harrell_ci_high']:.3f}), {int(row['n'])} patients, {int(row['events'])} progressions")
    for _, row in result.domain.iterrows():
        if isinstance(row["outside_domain"], int) and row["outside_domain"]:
            console.print(f"[yellow]{row['model']}, center {escape(str(row['center']))}:[/] {row['outside_domain']} "
                          f"of {row['patients']} patients outside the model's applicability domain")
    for _, failure in result.failures.iterrows():
        if failure.get("severity", "error") == "error":
            console.print(f"[red]failed[/] {failure['patient_id']}: {escape(str(failure['error']))}")
    if result.updated:
        stdout.print(f"updated models ({update}): {result.out_dir / 'updated_models'}")
    stdout.print(f"report: {result.report}")


segment_app = typer.Typer(help="Segmentation with nnU-Net v2 in the paper's configuration, and its evaluation.",
                          no_args_is_help=True)
app.add_typer(segment_app, name="segment")


def _segmentation_config(study):
    from hccrad.segment.nnunet import SegmentationConfig

    return SegmentationConfig.model_validate(study.config.segmentation)


@segment_app.command("export")
@_one_line_errors
def segment_export(
    manifest: Path | None = typer.Argument(None, help="The study YAML: export every patient's mask."),
    ct: Path | None = typer.Option(None, help="One CT (DICOM folder, or NIfTI) instead of a study."),
    mask: Path | None = typer.Option(None, help="Its mask (labels 1 liver, 2 tumor, 3 portal vein)."),
    out: Path | None = typer.Option(None, help="With --ct: the output file (.dcm)."),
    algorithm: str | None = typer.Option(None, help="With --ct: the model that drew the mask (segments typed "
                                                    "AUTOMATIC); without it, MANUAL."),
) -> None:
    """Write masks as DICOM Segmentation objects referencing their CT series (NIfTI for a NIfTI CT, saying why).

    With a study, each patient's mask (the manifest's, else the one `hccrad segment predict` drew, typed
    AUTOMATIC) goes to <output_dir>/segmentation/export/<id>.dcm.
    """
    from hccrad.io.dicomseg import export_mask

    if ct is not None:
        if mask is None or out is None:
            raise fail("with --ct give --mask and --out")
        result = export_mask(ct, mask, out, algorithm)
        stdout.print(f"written ({result.format}): {result.path}" + (f" - {result.note}" if result.note else ""))
        return
    if manifest is None:
        raise fail("give a study YAML, or --ct, --mask and --out")
    study = _load_study_or_exit(manifest)
    from hccrad.io.manifest import use_predicted_masks

    predicted = set(use_predicted_masks(study))
    layout = study.config.layout
    failures = 0
    for record in study.patients:
        if record.ct is None or not record.has_mask:
            console.print(f"[yellow]{record.patient_id}:[/] no {'CT' if record.ct is None else 'mask'}; skipped")
            continue
        try:
            result = export_mask(record.ct, record.mask_source, layout.exported_mask(record.patient_id),
                                 "hccrad nnU-Net" if record.patient_id in predicted else None,
                                 study.config.dicom_series)
        except InputError as exc:
            failures += 1
            console.print(f"[red]{record.patient_id}:[/] {exc}", soft_wrap=True)
            continue
        stdout.print(f"{record.patient_id}: {result.format} {result.path}" + (f" - {result.note}" if result.note
                                                                                else ""))
    if failures:
        raise typer.Exit(1)


@segment_app.command("prepare")
@_one_line_errors
def segment_prepare(manifest: Path = typer.Argument(..., help="The study YAML.")) -> None:
    """Write the cases that have reference masks as an nnU-Net v2 raw dataset."""
    from hccrad.segment.nnunet import prepare_dataset

    study = _load_study_or_exit(manifest)
    stdout.print(f"nnU-Net raw dataset: {prepare_dataset(study, _segmentation_config(study))}")


@segment_app.command("plan")
@_one_line_errors
def segment_plan(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    workers: int = typer.Option(2, help="Processes for fingerprinting and preprocessing."),
) -> None:
    """Fingerprint, plan (paper's spacing, patch, batch size and derived topology) and preprocess."""
    from hccrad.segment.nnunet import plan_and_preprocess

    study = _load_study_or_exit(manifest)
    stdout.print(f"plans: {plan_and_preprocess(study, _segmentation_config(study), workers)}")


@segment_app.command("train")
@_one_line_errors
def segment_train(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    fold: list[int] = typer.Option(None, "--fold", help="Fold(s) to train (default: all five)."),
    epochs: int | None = typer.Option(None, help="Epochs (default 1000, the paper's)."),
    iterations: int | None = typer.Option(None, help="Iterations per epoch (default 250)."),
) -> None:
    """Train nnU-Net folds on the best device available (CUDA, else CPU)."""
    from hccrad.segment.nnunet import train_folds

    study = _load_study_or_exit(manifest)
    folder = train_folds(study, _segmentation_config(study), list(fold) or None, epochs, iterations)
    stdout.print(f"model folder: {folder}")


@segment_app.command("predict")
@_one_line_errors
def segment_predict(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    model: Path | None = typer.Option(None, help="A trained nnU-Net model folder (default: this study's)."),
    overwrite: bool = typer.Option(False, help="Segment every case, not only those without a mask."),
    mirroring: bool = typer.Option(True, help="Test-time mirroring (8x slower, slightly better)."),
    tile_step: float = typer.Option(0.5, help="Sliding-window step as a fraction of the patch."),
    workers: int = typer.Option(2, help="Worker processes for preprocessing and export."),
    backend: str = typer.Option("nnunet", help="nnunet (a trained model) or totalsegmentator (no training)."),
) -> None:
    """Segment the study's cases, post-process, and write <output_dir>/segmentation/masks/<id>.nii.gz."""
    from hccrad.segment.nnunet import predict_cases

    study = _load_study_or_exit(manifest)
    if backend == "totalsegmentator":
        from hccrad.segment.totalseg import TotalSegmentatorUnavailable, predict_with_totalsegmentator

        try:
            written = predict_with_totalsegmentator(study, overwrite)
        except TotalSegmentatorUnavailable as exc:
            raise fail(str(exc), code=1) from exc
        stdout.print(f"{len(written)} masks written to {study.config.layout.predicted_masks_dir}")
        return
    if backend != "nnunet":
        raise fail(f"unknown backend {backend!r}: nnunet or totalsegmentator")
    config = _segmentation_config(study).model_copy(update={"use_mirroring": mirroring,
                                                            "tile_step_size": tile_step, "n_workers": workers})
    written = predict_cases(study, config, model, overwrite)
    stdout.print(f"{len(written)} masks written to {study.config.layout.predicted_masks_dir}")


@segment_app.command("evaluate")
@_one_line_errors
def segment_evaluate(
    manifest: Path = typer.Argument(..., help="The study YAML (its masks are the references)."),
    predictions: Path | None = typer.Option(None, help="Folder of <patient_id>.nii.gz predicted masks "
                                                        "(default: <output_dir>/segmentation/masks)."),
) -> None:
    """DSC and HD95 of predicted masks against the manifest's reference masks, per case, label and center."""
    from hccrad.segment.evaluate import evaluate_segmentations

    study = _load_study_or_exit(manifest)
    cases, summary = evaluate_segmentations(study, predictions)
    if cases.empty:
        raise fail("no patient has both a reference mask and a predicted mask", code=1)
    overall = summary[summary["center"] == "all"][["region", "n", "dsc_mean", "dsc_sd", "hd95_mm_median"]]
    stdout.print(overall.to_string(index=False))
    stdout.print(f"written: {study.config.layout.segmentation_evaluation}")


def _read_patients(patients: Path | None, patient: str | None):
    import json

    import pandas as pd

    if patient:
        is_file = Path(patient).is_file()
        if not is_file and not patient.lstrip().startswith("{"):
            raise fail(f"--patient {patient!r}: no such file, and not a JSON object (expected a file, or text such "
                       'as {"afp": 520, "child_pugh": "A", "bclc": "B", "treatment": "TACE"})')
        try:
            record = json.loads(Path(patient).read_text() if is_file else patient)
        except (ValueError, UnicodeDecodeError) as exc:
            raise fail(f"--patient {patient if is_file else 'text'}: not valid JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise fail(f"--patient: expected one JSON object of field: value, found a {type(record).__name__}")
        return pd.DataFrame([record]).set_index("patient_id") if "patient_id" in record else pd.DataFrame(
            [record], index=pd.Index(["patient"], name="patient_id"))
    if patients is None:
        raise fail("give --patients TABLE, --patient JSON, --ct CT with --mask MASK, or the four clinical factors "
                   "(--afp, --child-pugh, --bclc, --treatment) for the clinical model")
    if not patients.is_file():
        raise fail(f"--patients {patients}: no such file")
    try:
        if patients.suffix == ".parquet":
            table = pd.read_parquet(patients)
            return table if table.index.name == "patient_id" else table.set_index("patient_id")
        if patients.suffix in (".xlsx", ".xls"):
            return pd.read_excel(patients, index_col="patient_id")
        return pd.read_csv(patients, index_col="patient_id")
    except KeyError as exc:
        raise fail(f"--patients {patients}: no column 'patient_id' (one row per patient, with its id)") from exc
    except ValueError as exc:  # a parse error, or a missing index column
        raise fail(f"--patients {patients}: cannot be read as a table of patients with a 'patient_id' column "
                   f"(CSV, XLSX or Parquet): {' '.join(str(exc).split())}") from exc


@app.command()
@_one_line_errors
def predict(
    model: Path | None = typer.Option(None, "--model", "-m", help="A model artifact (JSON) written by `hccrad fit`."),
    models: Path | None = typer.Option(None, "--models", help="A models folder: score with every model in it."),
    patients: Path | None = typer.Option(None, help="Table of patients (CSV/XLSX/Parquet, column patient_id; "
                                                   "with `ct` and `mask` columns, features are computed)."),
    patient: str | None = typer.Option(None, help="One patient as a JSON object or a JSON file."),
    ct: Path | None = typer.Option(None, help="One patient's CT (NIfTI file or DICOM folder): compute its features."),
    mask: Path | None = typer.Option(None, help="Its label mask (1 liver, 2 tumor, 3 portal vein)."),
    segmentation_model: Path | None = typer.Option(None, help="A trained nnU-Net model folder that draws the mask "
                                                              "when none is given."),
    afp: str | None = typer.Option(None, help="AFP (ng/mL)."),
    child_pugh: str | None = typer.Option(None, help="Child-Pugh grade (A/B/C) or score (5-15)."),
    bclc: str | None = typer.Option(None, help="BCLC stage (0/A/B/C/D)."),
    treatment: str | None = typer.Option(None, help="Treatment style (as in the training data)."),
    patient_id: str = typer.Option("patient", help="The patient's id in the output (with --ct)."),
    out: Path | None = typer.Option(None, help="Write the predictions to this CSV."),
    json_out: Path | None = typer.Option(None, "--json", help="With --ct: write the full result (PFS intervals, "
                                                              "contributions) as JSON."),
    allow_impute: bool = typer.Option(False, help="Fill missing inputs with the training medians/modes."),
    allow_extrapolation: bool = typer.Option(False, help="Score inputs far outside the training range."),
    out_of_domain: str = typer.Option("warn", help="With --ct or the clinical flags: a prediction outside a model's "
                                                   "applicability domain is shown with a warning (warn) or its "
                                                   "numbers withheld (withhold)."),
) -> None:
    """Risk score, risk group and PFS probabilities for new patients, from saved models alone.

    From a table of features (--patients, --patient), or from images: --ct and --mask (or --segmentation-model)
    with the four clinical factors, or a --patients table with `ct` and `mask` columns. From images, features
    are computed exactly as the models' study did, and each model also gives 95% intervals of the PFS
    probabilities and each covariate's contribution.
    """
    from hccrad.survival import load_model, load_models, predict_patients

    if (model is None) == (models is None):
        raise fail("give one of --model FILE or --models DIR")
    fitted = {one.name: one for one in [load_model(model)]} if model is not None else load_models(models)
    if not fitted:
        raise fail(f"no model artifact in {models}")
    if ct is not None or segmentation_model is not None or mask is not None:
        clinical = {k: v for k, v in (("afp", afp), ("child_pugh", child_pugh), ("bclc", bclc),
                                      ("treatment", treatment)) if v is not None}
        if patient:
            clinical = {**_read_patients(None, patient).iloc[0].dropna().to_dict(), **clinical}
        _predict_images(fitted, {patient_id: (ct, mask, clinical)}, segmentation_model, out, json_out,
                        _out_of_domain(out_of_domain))
        return
    clinical = {k: v for k, v in (("afp", afp), ("child_pugh", child_pugh), ("bclc", bclc),
                                  ("treatment", treatment)) if v is not None}
    if patients is None and patient is None and clinical:
        # the four clinical factors and no images: the clinical model(s) alone, with intervals (docs/new-patient.md)
        _predict_images(fitted, {patient_id: (None, None, clinical)}, None, out, json_out,
                        _out_of_domain(out_of_domain))
        return
    table = _read_patients(patients, patient)
    if "ct" in table.columns:
        cases = {str(pid): (Path(row["ct"]), Path(row["mask"]) if isinstance(row.get("mask"), str) and row["mask"]
                            else None, row.drop(labels=["ct", "mask"], errors="ignore").dropna().to_dict())
                 for pid, row in table.iterrows()}
        _predict_images(fitted, cases, segmentation_model, out, json_out, _out_of_domain(out_of_domain))
        return
    import pandas as pd

    result = pd.concat([predict_patients(one, table, allow_impute, allow_extrapolation,
                                         _out_of_domain(out_of_domain)) for one in fitted.values()])
    if out:
        ensure_writable_dir(Path(out).parent)
        write_atomic(out, result.to_csv())
    stdout.print(result.to_string())
    failed = result[result["error"].fillna("") != ""] if "error" in result else result.iloc[0:0]
    if len(failed):
        console.print(f"[red]{len(failed)} of {len(result)} predictions not made[/] (see the error column)")
        raise typer.Exit(1)


def _out_of_domain(value: str) -> str:
    from hccrad.pipeline.predict import OUT_OF_DOMAIN_ACTIONS

    if value not in OUT_OF_DOMAIN_ACTIONS:
        raise fail(f"--out-of-domain {value!r}: expected {' or '.join(OUT_OF_DOMAIN_ACTIONS)}")
    return value


def _predict_images(fitted: dict, cases: dict, segmentation_model: Path | None, out: Path | None,
                    json_out: Path | None, out_of_domain: str = "warn") -> None:
    """Score each (ct, mask, clinical) case from its images; one failing case does not stop the others."""
    import json

    import numpy as np
    import pandas as pd

    from hccrad.pipeline.predict import predict_new_patient
    from hccrad.serve.present import percent

    rows, results, failures = [], {}, 0
    for patient_id, (ct_path, mask_path, clinical) in cases.items():
        try:
            result = predict_new_patient(fitted, clinical, ct_path, mask_path, patient_id, segmentation_model,
                                         out_of_domain=out_of_domain)
        except InputError as exc:
            failures += 1
            console.print(f"[red]{patient_id}:[/] {exc}", soft_wrap=True)
            rows.append(pd.DataFrame([{"patient_id": patient_id, "error": str(exc)}]).set_index("patient_id"))
            continue
        table = result.table().reset_index().assign(patient_id=patient_id).set_index("patient_id")
        rows.append(table.assign(error=""))
        results[patient_id] = result
        for name, prediction in result.predictions.items():
            contributions = prediction.contributions.sort_values("contribution", key=abs, ascending=False)
            if prediction.withheld:
                stdout.print(f"\n{patient_id} {name}: withheld (outside the model's applicability domain)")
                for warning in prediction.warnings():
                    console.print(f"  [yellow]warning:[/] {escape(warning)}", soft_wrap=True)
                continue
            stdout.print(f"\n{patient_id} {name}: risk score {prediction.risk_score:.3f} ({prediction.risk_group} "
                         f"risk, cut-off {prediction.cutoff:.3f}; training percentile "
                         f"{prediction.training_percentile:.0f})")
            if np.isfinite(prediction.domain_percentile):
                stdout.print(f"  applicability domain: distance {prediction.domain_distance:.2f}, percentile "
                             f"{prediction.domain_percentile:.0f} of the training patients' "
                             f"({'OUTSIDE' if prediction.outside_domain else 'inside'})")
            for row in prediction.survival.itertuples():
                stdout.print(f"  PFS at {row.time_months:g} months: {percent(row.pfs)} "
                             f"(95% CI {percent(row.ci_low)} to {percent(row.ci_high)})")
            for row in contributions.head(5).itertuples():
                stdout.print(f"  {row.covariate}: {row.contribution:+.3f}")
            for warning in prediction.warnings():
                console.print(f"  [yellow]warning:[/] {warning}", soft_wrap=True)
        for name, why in result.skipped.items():
            stdout.print(f"{patient_id} {name}: not scored ({why})")
        for warning in result.qc_warnings:
            console.print(f"[yellow]{patient_id} QC:[/] {warning}", soft_wrap=True)
    combined = pd.concat(rows)
    if out:
        ensure_writable_dir(Path(out).parent)
        write_atomic(out, combined.to_csv())
    if json_out:
        ensure_writable_dir(Path(json_out).parent)
        payload = {pid: {"predictions": {n: {**p.to_record(), "extrapolation": p.extrapolation,
                                              "warnings": p.warnings(),
                                              "contributions": p.contributions.to_dict(orient="records")}
                                          for n, p in r.predictions.items()},
                         "skipped": r.skipped, "qc_warnings": r.qc_warnings} for pid, r in results.items()}
        write_atomic(json_out, json.dumps(payload, indent=1, default=float))
    if failures:
        console.print(f"[red]{failures} of {len(cases)} patients not scored[/]")
        raise typer.Exit(1)


@app.command()
@_one_line_errors
def serve(
    models: Path = typer.Option(..., "--models", help="The models folder written by `hccrad fit`."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (default: this computer only)."),
    port: int = typer.Option(8000, help="Port."),
    upload_limit_mb: float = typer.Option(1024.0, help="Largest upload accepted, per file (MB)."),
    segmentation_model: Path | None = typer.Option(None, help="A trained nnU-Net model folder that draws the "
                                                              "mask when a CT comes without one."),
    password_file: Path | None = typer.Option(None, help="A file holding the password every request must give "
                                              "(HTTP Basic); required to bind an address other than loopback. "
                                              "Or set HCCRAD_SERVE_PASSWORD."),
    allowed_host: list[str] = typer.Option([], help="A host name the app answers besides loopback and --host "
                                           "(for a reverse proxy's name); repeat for several."),
    primary_model: str = typer.Option("C-T&L", help="The study's primary model, shown first and marked."),
    max_jobs: int = typer.Option(1, min=1, help="Predictions computed at once (each takes a core and about 1 GB); "
                                 "the others wait in a queue."),
    out_of_domain: str = typer.Option("warn", help="A prediction outside a model's applicability domain: warn "
                                                   "(shown, flagged, not bold) or withhold (numbers not shown)."),
    tls_cert: Path | None = typer.Option(None, help="TLS certificate (PEM): serve HTTPS."),
    tls_key: Path | None = typer.Option(None, help="Its private key (PEM)."),
    behind_proxy: bool = typer.Option(False, "--behind-proxy", help="TLS ends at a reverse proxy in front of "
                                                                    "the app (the cookie is then Secure)."),
    trusted_proxy: list[str] = typer.Option([], help="An address whose X-Forwarded-For/-Proto headers are believed "
                                                     "(the reverse proxy); none by default."),
) -> None:
    """A local web app: a new patient's predicted response, risk group, PFS curve and masks, in the browser."""
    import os

    from hccrad.serve.app import MIN_PASSWORD_LENGTH, PASSWORD_REMEDY, AppSettings, check_password_file
    from hccrad.serve.app import serve as run_app

    password = os.environ.get("HCCRAD_SERVE_PASSWORD") or None
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise fail(f"HCCRAD_SERVE_PASSWORD has {len(password)} characters; at least {MIN_PASSWORD_LENGTH} are "
                   f"needed: {PASSWORD_REMEDY}")
    if password_file is not None:
        password = check_password_file(password_file)
    if (tls_cert is None) != (tls_key is None):
        raise fail("give both --tls-cert and --tls-key (the certificate and its private key, PEM)")
    settings = AppSettings(models, upload_limit_mb, segmentation_model=segmentation_model,
                           allowed_hosts=tuple(allowed_host), password=password, primary_model=primary_model,
                           max_jobs=max_jobs, out_of_domain=_out_of_domain(out_of_domain),
                           tls=tls_cert is not None, behind_proxy=behind_proxy)
    run_app(settings, host, port, tls_cert, tls_key, tuple(trusted_proxy))  # refuses an unsafe binding first


def _run(manifest: Path, scheduler: str | None, bootstrap: int | None) -> None:
    from hccrad.features.memory import imports_uncollected

    with imports_uncollected():
        from hccrad.pipeline import run_study

    bars = {}
    with progress_bar() as bar:
        def progress(stage: str, done: int, total: int | None) -> None:
            if stage not in bars:
                bars[stage] = bar.add_task(stage, total=total)
            bar.update(bars[stage], completed=done, total=total)

        result = run_study(manifest, scheduler=scheduler, n_bootstrap=bootstrap, progress=progress)
    for record in result.stages:
        colour = {"ran": "green", "reused": "cyan", "skipped": "yellow", "failed": "red"}.get(record.status, "white")
        stdout.print(f"[{colour}]{record.status:8}[/] {record.name:9} {record.seconds:7.1f} s  {record.detail}")
    for case in result.failed_cases:
        console.print(f"[red]failed[/] {case['patient_id']} ({case['stage']}): {case['error']}")
    if result.report is None:
        from hccrad.features.cohort import SchedulerError

        # A fault of the surroundings the user can fix (disk, permissions, Dask): one line naming it, status 2. A
        # run stopped by its data (too few training patients) keeps status 1.
        fixable = result.error is not None and (isinstance(result.error, SchedulerError)
                                                or write_fault_message(result.error) is not None)
        if fixable:
            stage = result.stopped.split(":", 1)[0] if result.stopped else "run"
            detail = write_fault_message(result.error) or str(result.error)
            raise fail(f"{stage}: {detail}")
        reason = f" ({result.stopped})" if result.stopped else ""
        raise fail(f"the run stopped before the report{reason}; see hccrad-run.log in the output folder", code=1)
    stdout.print(f"report: {result.report}")
    if result.failed_cases:
        console.print(f"[red]{len(result.failed_cases)} case(s) failed[/]; the report covers the others")
        raise typer.Exit(code=1)


@app.command()
@_one_line_errors
def run(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler address for the features stage."),
    bootstrap: int | None = typer.Option(None, help="Bootstrap resamples for confidence intervals (default: the "
                                         "manifest's evaluation: {n_bootstrap}, 500)."),
) -> None:
    """The whole study: validate, features, fit, evaluate, report (reusing what is still valid)."""
    _run(manifest, scheduler, bootstrap)


@app.command()
@_one_line_errors
def demo(
    out: Path = typer.Option(Path("hccrad-demo"), "--out", "-o", help="Folder for the demo cohort and results."),
    n_patients: int = typer.Option(120, "--patients", "-n", min=6),
    seed: int = typer.Option(7),
    bootstrap: int = typer.Option(200, help="Bootstrap resamples for confidence intervals."),
    robustness: bool = typer.Option(False, "--robustness", help="Also measure feature robustness (5 perturbations "
                                    "of 20 training patients) and filter the selection at ICC 0.75."),
) -> None:
    """Synthesize the default six-center demo cohort and run the whole study on it."""
    manifest = out / "study.yaml"
    if not manifest.is_file():
        synth(out=out, n_patients=n_patients, seed=seed, full_resolution=False, jobs=0)
    else:
        stdout.print(f"reusing the demo cohort in {out} (delete the folder to synthesize it again)")
    set_demo_robustness(manifest, robustness)
    _run(manifest, None, bootstrap)


#: The demo's robustness settings (``hccrad demo --robustness``): small enough for a laptop.
DEMO_ROBUSTNESS = {"perturbations": 5, "patients": 20}


def set_demo_robustness(manifest: Path, on: bool) -> None:
    """Turn the demo manifest's robustness section on (:data:`DEMO_ROBUSTNESS`) or off."""
    import yaml

    from hccrad.io.files import write_atomic

    settings = yaml.safe_load(manifest.read_text())
    features = dict(settings.get("features") or {})
    if on == ("robustness" in features):
        return
    if on:
        features["robustness"] = dict(DEMO_ROBUSTNESS)
    else:
        features.pop("robustness")
    settings["features"] = features
    write_atomic(manifest, yaml.safe_dump(settings, sort_keys=False))


#: The status of a run stopped by Ctrl-C (128 + SIGINT), as Typer's standalone mode exits.
INTERRUPTED_STATUS = 130


def _library_warnings_to_log() -> None:
    """Keep other libraries' warnings (pandas, numpy, matplotlib, lifelines) off the console: each goes to the run
    log (``hccrad-run.log``, at INFO) with its source. What a user must know is said by hccrad itself, in words
    (QC warnings, notes in the tables, "not estimable (reason)")."""
    import os

    library_log = logging.getLogger("hccrad.run.library")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # the feature workers (other processes) print none either

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        library_log.info("library warning not shown on the console: %s (%s:%s): %s", category.__name__, filename,
                         lineno, message)

    warnings.showwarning = show


#: The environment variables OpenBLAS reads for its thread count, in its order of precedence.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def _process_defaults() -> None:
    """Defaults for numpy's libraries, set before numpy is imported; the feature workers inherit them.

    * One OpenBLAS thread unless the user chose a count (any of :data:`BLAS_THREAD_VARIABLES`). hccrad's matrices
      are small (Cox fits, 3 x 3 and Ng x Ng eigenvalues) and the features stage runs one process per core:
      OpenBLAS's extra threads only spin, from numpy's import on (under perf, in the features command's first
      second).
    * ``NUMPY_MADVISE_HUGEPAGE=0`` unless set: numpy asks the kernel for transparent huge pages for every array of
      4 MB or more, and where the kernel then compacts memory at the page fault (``defrag`` ``madvise``, the common
      default) a large array's first touch is slower: the features command's median CPU was 7.42 s without the
      advice and 7.86 s with it (``bench/features_command_bench.py --compare-env NUMPY_MADVISE_HUGEPAGE=1``).
    """
    import os

    if not any(os.environ.get(name) for name in BLAS_THREAD_VARIABLES):
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def main() -> None:
    """Console entry point (guarded for worker processes that use the spawn start method).

    Typer's standalone mode turns Ctrl-C into a bare exit with status 130 before a ``KeyboardInterrupt`` reaches
    this function, so that status is recognised too: either way the user reads ``interrupted; run again to
    resume`` and the status stays 130.
    """
    _library_warnings_to_log()
    _process_defaults()
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted; run again to resume")
        sys.exit(INTERRUPTED_STATUS)
    except SystemExit as exc:
        if exc.code == INTERRUPTED_STATUS:
            console.print("interrupted; run again to resume")
        raise


if __name__ == "__main__":
    main()
