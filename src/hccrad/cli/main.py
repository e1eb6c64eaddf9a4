"""The `hccrad` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hccrad import __version__
from hccrad.io.config import ManifestError

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
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        stdout.print(f"hccrad {__version__}")
        raise typer.Exit(0)


@app.command()
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
        table.add_row(f"[{style}]{issue.severity}[/]", str(issue.row or "-"), issue.patient_id or "-",
                      issue.field, issue.message)
    stdout.print(table)


@app.command()
def validate(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    report: Path | None = typer.Option(None, help="Also write every issue to this CSV."),
    acquisition: bool = typer.Option(True, help="Read the CT headers and print the per-center table."),
) -> None:
    """Check a study manifest: every problem with its row, field and what was expected."""
    from hccrad.io.acquisition import acquisition_table, center_acquisition_summary
    from hccrad.io.manifest import load_study

    try:
        study = load_study(manifest)
    except ManifestError as exc:
        raise fail(str(exc)) from exc
    _print_issues(study)
    if report is not None:
        study.issues_table().to_csv(report, index=False)
    table = study.table()
    stdout.print(
        f"[bold]{study.config.name}[/]: {study.n_rows} rows, {len(study.patients)} valid patients "
        f"({(table['dataset'] == 'training').sum() if len(table) else 0} training, "
        f"{(table['dataset'] == 'validation').sum() if len(table) else 0} validation), "
        f"{len(study.errors)} errors, {len(study.warnings)} warnings"
    )
    if acquisition and study.patients and study.config.require_images:
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

    try:
        study = load_study(manifest)
    except ManifestError as exc:
        raise fail(str(exc)) from exc
    if study.errors:
        console.print(f"[yellow]{len(study.errors)} manifest errors[/]: those rows are left out "
                      f"(run `hccrad validate {manifest}` for the list)")
    return study


@app.command()
def features(
    manifest: Path = typer.Argument(..., help="The study YAML."),
    scheduler: str | None = typer.Option(None, help="Address of an existing Dask scheduler (tcp://host:8786)."),
    out: Path | None = typer.Option(None, help="Output folder (default: <output_dir>/features)."),
) -> None:
    """Compute Tumor and Rliver features of every case not yet done, into one cohort table."""
    from hccrad.features import extract_features

    study = _load_study_or_exit(manifest)
    with progress_bar() as bar:
        task = bar.add_task("extracting features", total=None)
        run = extract_features(study, out_dir=out, scheduler=scheduler,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    stdout.print(f"features: {len(run.computed)} computed, {len(run.reused)} reused, "
                 f"{len(run.failures)} failed; table: {run.out_dir / 'features.parquet'}")
    for _, failure in run.failures.iterrows():
        console.print(f"[red]failed[/] {failure['patient_id']}: {failure['error_type']}: {failure['error']}")


@app.command()
def demo(
    out: Path = typer.Option(Path("hccrad-demo"), "--out", "-o", help="Folder for the demo cohort and results."),
    n_patients: int = typer.Option(120, "--patients", "-n", min=6),
    seed: int = typer.Option(7),
) -> None:
    """Synthesize the default demo cohort and check its manifest."""
    synth(out=out, n_patients=n_patients, seed=seed, full_resolution=False, jobs=0)
    validate(manifest=out / "study.yaml", report=None, acquisition=True)


def main() -> None:
    """Console entry point (guarded for worker processes that use the spawn start method)."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished outputs are kept; run the command again to resume.")
        sys.exit(130)


if __name__ == "__main__":
    main()
