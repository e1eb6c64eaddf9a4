"""`hccrad features`: every case of a study through Dask, resumable, into one cohort table.

Output folder (``<output_dir>/features``)::

    cases/<patient_id>.json   one file per case, written atomically: features or the error, with the
                              fingerprint of its inputs (a changed mask or parameter file recomputes it)
    features.parquet / .csv   one row per patient: clinical columns, then morphological and PyRadiomics features
    failures.csv              patient_id, error_type, error for every case without features
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.features.config import VALUE_SETTINGS, FeatureConfig
from hccrad.features.extract import CaseJob, case_fingerprint, compute_case, describe_plan, engine_plan, engine_version
from hccrad.features.memory import release_freed_memory
from hccrad.io import layout
from hccrad.io.errors import InputError
from hccrad.io.files import ensure_writable_dir, write_atomic, write_atomic_group
from hccrad.io.ids import case_path
from hccrad.io.manifest import Study, use_predicted_masks
from hccrad.io.tables import parquet_bytes

CLINICAL_TABLE_COLUMNS = ["center", "dataset", "afp", "child_pugh", "child_pugh_score", "bclc", "treatment",
                          "pfs_months", "pfs_event"]


@dataclass
class FeatureRun:
    """What a features run produced and did."""

    table: pd.DataFrame
    #: failures.csv: the cases without features (severity "error") and QC warnings of cases with features.
    issues: pd.DataFrame
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    out_dir: Path | None = None
    #: :func:`hccrad.features.extract.engine_plan`: which engine computed which classes and image types.
    engine_plan: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> pd.DataFrame:
        """The cases without features, with the error of each."""
        return self.issues[self.issues["severity"] == "error"]

    @property
    def qc_warnings(self) -> pd.DataFrame:
        """QC warnings of cases whose features were computed."""
        return self.issues[self.issues["severity"] == "warning"]


def read_case(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class StudyJobSettings:
    """What every case job of a study shares: the PyRadiomics parameters, the feature settings, the DICOM series
    rule, the engine's version with its plan, and the portal vein's largest plausible diameter."""

    params: dict[str, Any]
    settings: dict[str, Any]
    series_rule: dict[str, Any]
    version: str
    max_diameter: float

    @classmethod
    def of(cls, study: Study, config: FeatureConfig) -> StudyJobSettings:
        params = config.radiomics_params(study.config.base_dir)
        plan = json.dumps(engine_plan(config.engine, params), sort_keys=True)
        return cls(params, config.model_dump(mode="json"), study.config.dicom_series.model_dump(),
                   f"{engine_version(config.engine)}|plan {plan}", study.config.masks.portal_vein_max_diameter_mm)

    def digest(self) -> str:
        """SHA-256 of what changes a case's values (not the CTs and masks): the parameters, the value settings, the
        engine with its plan and the portal vein's limit."""
        return hashlib.sha256(json.dumps([self.params, self.value_settings(), self.version, self.max_diameter],
                                         sort_keys=True, default=str).encode()).hexdigest()

    def value_settings(self) -> dict[str, Any]:
        # only what changes values: the number of workers or the robustness section recompute nothing
        return {name: self.settings[name] for name in VALUE_SETTINGS} | {"portal_vein_max_diameter_mm":
                                                                          self.max_diameter}


def case_job(record, shared: StudyJobSettings) -> CaseJob:
    """The job of one patient with a CT and a mask, its fingerprint hashing the CT's and the mask's content."""
    source = record.mask_source
    fingerprint = case_fingerprint(record.ct, source, record.portal_vein_diameter_mm, shared.params,
                                   shared.value_settings(), shared.version)
    return CaseJob(record.patient_id, str(record.ct), str(record.mask or ""), record.portal_vein_diameter_mm,
                   shared.params, shared.settings, shared.series_rule, fingerprint, source.to_dict(),
                   shared.max_diameter)


def build_jobs(study: Study, config: FeatureConfig) -> tuple[list[CaseJob], list[dict[str, Any]]]:
    """The jobs of every patient with a CT and a mask, and a failure for every patient without.

    A patient without a mask in the manifest takes the mask the segmentation stage predicted for it, when there
    is one (:func:`hccrad.io.manifest.use_predicted_masks`).
    """
    use_predicted_masks(study)
    shared = StudyJobSettings.of(study, config)
    jobs, missing = [], []
    for record in study.patients:
        if record.ct is None or not record.has_mask:
            what = "CT" if record.ct is None else "mask"
            missing.append({"status": "failed", "patient_id": record.patient_id, "error_type": "MissingInput",
                            "error": f"no {what}: give one in the manifest or segment the case first"})
            continue
        jobs.append(case_job(record, shared))
    return jobs, missing


def local_worker_count(config: FeatureConfig, n_jobs: int) -> int:
    """Workers for a local cluster: one per core, no more than free memory / memory per case allows."""
    import psutil

    if config.n_workers:
        return max(1, min(config.n_workers, n_jobs))
    by_memory = int(psutil.virtual_memory().available / (config.memory_per_case() * 1024**3))
    return max(1, min(os.cpu_count() or 1, by_memory, n_jobs))


class SchedulerError(InputError):
    """A Dask scheduler address that is malformed, unreachable, or lost during the run."""


#: ``tcp://host:port`` and Dask's other protocols; a bare ``host:port`` means tcp.
_SCHEDULER_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


@contextlib.contextmanager
def _quiet_distributed_client():
    """distributed's client logs its reconnection attempts as tracebacks; hccrad reports a lost or unreachable
    scheduler itself, in one line (:class:`SchedulerError`), so those logs are held back meanwhile."""
    client_log = logging.getLogger("distributed.client")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client_log.setLevel(level)


def check_scheduler_address(address: str) -> None:
    """A :class:`SchedulerError` unless ``address`` has the form of a Dask scheduler address."""
    if not _SCHEDULER_ADDRESS.match(address) or int(address.rsplit(":", 1)[1]) > 65535:
        raise SchedulerError(f"--scheduler {address!r} is not a Dask scheduler address: expected tcp://host:port "
                             "(for example tcp://127.0.0.1:8786), or leave --scheduler out for a local cluster")


def connect_scheduler(address: str, timeout_s: float = 10.0):
    """A Dask client of the scheduler at ``address``, or a :class:`SchedulerError` that names the address, what
    went wrong and the remedy (malformed, nothing listening, timed out)."""
    from distributed import Client

    check_scheduler_address(address)
    try:
        return Client(address, timeout=f"{timeout_s:g}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(f"cannot reach a Dask scheduler at {address} within {timeout_s:g} s "
                             f"({type(exc).__name__}: {_one_line(exc)}); start one there (dask scheduler), or leave "
                             "--scheduler out for a local cluster") from exc


def run_jobs(jobs: list, cases_dir: Path, scheduler: str | None, config: FeatureConfig,
             on_result: Callable[[dict[str, Any]], None] | None = None,
             worker: Callable[[Any], dict[str, Any]] = compute_case) -> list[str]:
    """Run ``jobs`` with ``worker`` (default :func:`compute_case`); each result is written by this process, once, as
    it arrives, to ``<cases_dir>/<job.case_id>.json``.

    Where one local worker suffices (one case, ``n_workers: 1``, or memory for one), the cases run here, one after
    the other, without a Dask cluster (whose start costs seconds of CPU per worker). Otherwise on a Dask cluster:
    the local one compiles nothing in its workers, since the engine's kernels are compiled (or loaded from numba's
    on-disk cache) here first. A worker lost mid-task (killed, out of memory) makes Dask run the task again
    elsewhere; a task that keeps killing workers is recorded as a failure of its case. A malformed, unreachable or
    lost scheduler is a :class:`SchedulerError` (one line); the cases finished before it are kept.
    """
    if scheduler:
        check_scheduler_address(scheduler)
    if not jobs:
        return []
    if not scheduler and local_worker_count(config, len(jobs)) == 1:
        return _run_here(jobs, cases_dir, on_result, worker)
    if not scheduler:
        warm_engine(getattr(jobs[0], "case", jobs[0]))  # a perturbed case carries its case's job
    with _quiet_distributed_client():
        return _run_on_cluster(jobs, cases_dir, scheduler, config, on_result, worker)


def _run_here(jobs: list, cases_dir: Path, on_result, worker) -> list[str]:
    """The cases one after the other in this process; each result written as it comes (an interrupted run keeps
    the finished ones)."""
    done: list[str] = []
    for job in jobs:
        result = worker(job)
        write_atomic(case_path(cases_dir, job.case_id, ".json"), json.dumps(result))
        done.append(job.case_id)
        if on_result:
            on_result(result)
    return done


def warm_engine(job: CaseJob) -> None:
    """Run the case's feature settings once on a tiny synthetic region in this process, so that numba compiles the
    engine's kernels (first run after an install: about 10 s) once, here, and writes them to its on-disk cache,
    rather than in every worker at once; with a warm cache this loads them (a fraction of a second). Any failure
    is left for the real cases to report."""
    import numpy as np
    import SimpleITK as sitk

    from hccrad.features.extract import region_radiomics

    config = FeatureConfig.model_validate(job.config)
    if config.engine == "pyradiomics":
        return
    shape = (16, 24, 24)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    region = ((z - 8) / 5.0) ** 2 + ((y - 12) / 8.0) ** 2 + ((x - 12) / 8.0) ** 2 <= 1.0
    values = 60 + 30 * np.sin(z + 0.5 * y) * np.cos(0.7 * x) + np.zeros(shape)
    image = sitk.GetImageFromArray(values.astype(np.float32 if config.cast_to_float32 else np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    try:
        region_radiomics("hccrad", {**job.radiomics_params, "imageType": {
            name: custom for name, custom in (job.radiomics_params.get("imageType") or {"Original": {}}).items()
            if not name.startswith("LBP")} or {"Original": {}}}, 6, config.cast_to_float32)(image, region, "W")
    except Exception:  # a warm-up only; the cases report their own errors
        logging.getLogger("hccrad.run.features").debug("engine warm-up failed", exc_info=True)


def _run_on_cluster(jobs, cases_dir, scheduler, config, on_result, worker) -> list[str]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = connect_scheduler(scheduler)
    else:
        import dask

        # Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, which returns every freed block to the system
        # and so makes each filtered image's arrays fault in again: about 10% more CPU per case
        # (bench/features_bench.py --malloc). A large case sets hccrad's own (hccrad.features.memory).
        environ = {key: value for key, value in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                   if key != "MALLOC_TRIM_THRESHOLD_"}
        # The dashboard on a free loopback port: never "port 8787 is already in use", never on the network.
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=local_worker_count(config, len(jobs)), threads_per_worker=1,
                                   processes=True, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
                                   memory_limit=0)
        client = Client(cluster)
    done: list[str] = []
    try:
        # in the given order (the perturbations of a patient one after the other, so a worker reads its CT once)
        futures = {client.submit(worker, job, key=f"features-{job.case_id}-{job.fingerprint}",
                                 priority=len(jobs) - index): job for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            job = futures[future]
            if future.status == "error":  # the task itself failed, or kept killing workers (KilledWorker)
                exc = future.exception()
                result = {"status": "failed", "patient_id": job.patient_id, "fingerprint": job.fingerprint,
                          "error_type": type(exc).__name__, "error": str(exc)}
            else:
                try:
                    result = future.result()
                except Exception as exc:  # the scheduler went away: not the case's fault, so nothing is recorded
                    where = scheduler or "the local Dask cluster"
                    raise SchedulerError(
                        f"lost the connection to {where} after {len(done)} of {len(jobs)} cases "
                        f"({type(exc).__name__}: {_one_line(exc)}); the finished cases are kept: run again to "
                        "resume") from exc
            write_atomic(case_path(cases_dir, job.case_id, ".json"), json.dumps(result))
            done.append(job.case_id)
            if on_result:
                on_result(result)
    finally:
        _close_quietly(client, cluster)
    return done


def _close_quietly(client, cluster) -> None:
    """Close the client (and the local cluster); after a lost scheduler, closing may fail too, and the run's
    one-line error already says what happened."""
    with contextlib.suppress(Exception):
        client.close(timeout=5)
    if cluster is not None:
        cluster.close()


def assemble(study: Study, jobs: list[CaseJob], missing: list[dict[str, Any]], cases_dir: Path
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cohort table (valid cases) and the failures table, from the current case files."""
    clinical = study.table()
    rows, failures = [], list(missing)
    for job in jobs:
        result = read_case(case_path(cases_dir, job.patient_id, ".json"))
        if result is None or result.get("fingerprint") != job.fingerprint:
            failures.append({"patient_id": job.patient_id, "error_type": "NotComputed",
                             "error": "no current result (interrupted run?): run the command again"})
        elif result["status"] != "ok":
            failures.append(result)
        else:
            rows.append({"patient_id": job.patient_id, **result["features"]})
            failures.extend({"patient_id": job.patient_id, "severity": "warning", "error_type": "QCWarning",
                             "error": warning} for warning in result.get("qc_warnings", []))
    if rows:
        features = pd.DataFrame(rows).set_index("patient_id")
    else:
        features = pd.DataFrame(index=pd.Index([], name="patient_id"))
    table = clinical.loc[features.index, CLINICAL_TABLE_COLUMNS].join(features)
    columns = ["patient_id", "severity", "error_type", "error"]
    failure_table = pd.DataFrame(
        [{**{key: failure.get(key) for key in columns}, "severity": failure.get("severity", "error")}
         for failure in failures],
        columns=columns,
    )
    return table, failure_table


def extract_features(study: Study, out_dir: Path | None = None, scheduler: str | None = None,
                     config: FeatureConfig | None = None, progress: Callable[[int, int], None] | None = None,
                     on_result: Callable[[dict[str, Any]], None] | None = None) -> FeatureRun:
    """Compute the features of every case not yet done and write the cohort table.

    Parameters
    ----------
    study
        A loaded study; only its valid patients are processed.
    out_dir
        Default ``<output_dir>/features`` of the study.
    scheduler
        Address of an existing Dask scheduler (``tcp://host:8786``); default a local cluster.
    config
        Default: the study's ``features:`` section.
    progress
        ``progress(done, total)`` after each case computed in this run.
    on_result
        Called with each new case result (tests use it to interrupt a run).
    """
    config = config or FeatureConfig.model_validate(study.config.features)
    out_dir = Path(out_dir) if out_dir else study.config.layout.features_dir
    cases_dir = ensure_writable_dir(out_dir / layout.FEATURE_CASES)
    jobs, missing = build_jobs(study, config)
    plan = engine_plan(config.engine, config.radiomics_params(study.config.base_dir))
    logging.getLogger("hccrad.run.features").info(describe_plan(plan))  # once, in the run log
    pending, reused = [], []
    for job in jobs:
        cached = read_case(case_path(cases_dir, job.patient_id, ".json"))
        if cached is not None and cached.get("fingerprint") == job.fingerprint:
            reused.append(job.patient_id)
        else:
            pending.append(job)

    counter = {"done": 0}

    def report(result: dict[str, Any]) -> None:
        counter["done"] += 1
        if progress:
            progress(counter["done"], len(pending))
        if on_result:
            on_result(result)

    computed = run_jobs(pending, cases_dir, scheduler, config, report)
    release_freed_memory()  # what the cases freed, before the table's own memory comes on top
    table, failures = assemble(study, jobs, missing, cases_dir)
    errors = failures[failures["severity"] == "error"]
    write_atomic_group({  # one result in four files: all replaced, or none
        out_dir / layout.FEATURE_TABLE_CSV: table.to_csv(),
        out_dir / layout.FEATURE_TABLE: parquet_bytes(table),  # pandas' own file, without its per-column pass
        out_dir / layout.FEATURE_FAILURES: failures.to_csv(index=False),
        out_dir / layout.FEATURE_RUN: json.dumps({"computed": computed, "reused": reused,
                                                  "failed": errors["patient_id"].tolist(),
                                                  "engine_plan": plan,
                                                  "config": config.model_dump(mode="json")}, indent=2)})
    return FeatureRun(table, failures, computed, reused, out_dir, plan)


def load_feature_table(path: Path) -> pd.DataFrame:
    """Read a cohort table written by :func:`extract_features` (Parquet or CSV)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, index_col="patient_id")
