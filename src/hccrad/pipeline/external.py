"""`hccrad external-validate`: saved models applied, frozen, to another hospital's patients (TRIPOD type 4).

Every patient of the study is external. Their features are computed with the settings the models record (the
same engine check as ``hccrad predict``), the models score them with their recorded coding, preprocessing and
cut-off, and the study's whole evaluation runs on them (discrimination, comparisons, calibration, Brier, decision
curves, risk groups with the frozen cut-off, subgroups). With ``update`` the models' calibration is also updated on
these patients (:mod:`hccrad.survival.updating`): calibration before and after, discrimination unchanged, and the
updated calibration's optimism by bootstrap over the updating cohort. Outputs under ``<output_dir>/external``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hccrad.io.errors import InputError
from hccrad.io.files import ensure_writable_dir, write_atomic
from hccrad.io.manifest import Study
from hccrad.io.provenance import file_sha256

#: The evaluation's name for the patients of an external validation (its tables' ``dataset``).
EXTERNAL_SET = "validation"
#: Bootstrap resamples of the updated calibration's optimism (default).
UPDATE_BOOTSTRAP = 200


class ExternalValidationError(InputError, ValueError):
    """Saved models that cannot be validated on this study (none found, features that cannot be computed)."""


@dataclass
class ExternalValidation:
    """What ``external-validate`` wrote: the folder, the evaluation, the provenance of each model, the updated
    models and their calibration before and after, and the report."""
    out_dir: Path
    evaluation: Any
    provenance: pd.DataFrame
    predictions: pd.DataFrame
    updated: dict[str, Any] = field(default_factory=dict)
    update_calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    report: Path | None = None
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    domain: pd.DataFrame = field(default_factory=pd.DataFrame)


def model_provenance(models_dir: Path, models: dict[str, Any]) -> pd.DataFrame:
    """Per model: its artifact file, the file's SHA-256, the content checksum it carries, when it was fitted and
    on which development study (from its lineage; "not recorded" for an artifact before lineage was written)."""
    from hccrad.io import layout

    rows = []
    for name, model in models.items():
        path = Path(models_dir) / layout.model_artifact_name(name)
        content = json.loads(path.read_text())
        lineage = getattr(model, "lineage_", None) or {}
        rows.append({"model": name, "artifact": path.name, "file_sha256": file_sha256(path),
                     "content_sha256": (content.get("checksum") or {}).get("value", ""),
                     "created": content.get("created", ""),
                     "development_study": lineage.get("study", "not recorded"),
                     "development_date": lineage.get("date", content.get("created", "")),
                     "training_patients": model.training_.get("n"), "training_events": model.training_.get("events"),
                     "training_centers": ", ".join(lineage.get("training_centers", [])) or "not recorded"})
    return pd.DataFrame(rows)


def domain_by_center(models: dict[str, Any], table: pd.DataFrame) -> pd.DataFrame:
    """Per model and center: patients, how many lie outside the model's applicability domain (and their share),
    the median domain percentile and the patients with an input outside the training range."""
    rows = []
    centers = table["center"].astype(str) if "center" in table else pd.Series("all", index=table.index)
    for name, model in models.items():
        place = model.applicability(table)
        for center in sorted(centers.unique()):
            part = place[centers.to_numpy() == center]
            recorded = part["outside"].notna().any()
            outside = int(part["outside"].fillna(False).astype(bool).sum()) if recorded else None
            rows.append({"model": name, "center": center, "patients": int(len(part)),
                         "outside_domain": outside if recorded else "not recorded",
                         "share_outside": outside / len(part) if recorded and len(part) else float("nan"),
                         "median_percentile": float(part["percentile"].median()) if recorded else float("nan"),
                         "with_input_outside_range": int((part["n_outside_range"] > 0).sum())})
    return pd.DataFrame(rows)


def external_features(study: Study, models: dict[str, Any], out_dir: Path, scheduler: str | None = None,
                      progress: Callable[[int, int], None] | None = None):
    """The study's features computed as the models' record says (engine and version checked, the recorded
    PyRadiomics parameters and value settings), into ``out_dir/features``; None for clinical-only models."""
    import yaml

    from hccrad.features import FeatureConfig
    from hccrad.features.cohort import extract_features
    from hccrad.pipeline.predict import check_engine, shared_feature_settings

    settings = shared_feature_settings(models)
    if settings is None:
        return None
    check_engine(settings)
    folder = ensure_writable_dir(out_dir / "features")
    params_path = folder / "model_radiomics_params.yaml"
    write_atomic(params_path, yaml.safe_dump(settings["radiomics_params"], sort_keys=True))
    own = dict(study.config.features)
    own.pop("robustness", None)
    config = FeatureConfig.model_validate({**own, **settings["settings"], "engine": settings["engine"],
                                           "params": str(params_path)})
    return extract_features(study, out_dir=folder, scheduler=scheduler, config=config, progress=progress)


def _calibration_rows(predictions: pd.DataFrame, models: dict[str, Any], label: str, horizons, rule, baseline
                      ) -> list[dict]:
    from hccrad.evaluate.calibration import calibration_summary
    from hccrad.evaluate.discrimination import harrell_c
    from hccrad.io.layout import pfs_column, risk_column

    rows = []
    for name in models:
        scored = predictions[predictions[risk_column(name)].notna()]
        time, event = scored["pfs_months"].to_numpy(float), scored["pfs_event"].to_numpy(int)
        score = scored[risk_column(name)].to_numpy(float)
        for horizon in horizons:
            risk = 1.0 - scored[pfs_column(name, horizon)].to_numpy(float)
            summary = calibration_summary(time, event, score, risk, horizon, rule, baseline)
            rows.append({"model": name, "version": label, "horizon": horizon,
                         "harrell_c": harrell_c(time, event, score),
                         **{k: summary[k] for k in ("ici", "e50", "e90", "slope", "oe_ratio", "oe_ci_low",
                                                    "oe_ci_high")}})
    return rows


def update_optimism(model, table: pd.DataFrame, method: str, horizons, rule, baseline, n_boot: int, seed: int
                    ) -> pd.DataFrame:
    """The optimism of the updated model's calibration (ICI and O/E per horizon): the update is refitted on each of
    ``n_boot`` bootstrap resamples of the updating cohort and its calibration measured on that resample (apparent)
    and on the whole cohort (test); the optimism is the mean difference, and the corrected value the apparent one
    on the whole cohort minus it (Harrell's bootstrap, as :mod:`hccrad.evaluate.internal` for the fit)."""
    from hccrad.evaluate.calibration import calibration_summary
    from hccrad.survival.updating import update_model

    def measures(updated, frame) -> dict:
        time, event = frame["pfs_months"].to_numpy(float), frame["pfs_event"].to_numpy(int)
        score = updated.predict(frame)
        survival = updated.predict_survival(frame, list(horizons)).to_numpy(float)
        out = {}
        for k, horizon in enumerate(horizons):
            summary = calibration_summary(time, event, score, 1.0 - survival[:, k], horizon, rule, baseline)
            out[f"ici_{horizon:g}m"], out[f"oe_{horizon:g}m"] = summary["ici"], summary["oe_ratio"]
        return out

    full = update_model(model, table, method, {})
    apparent = measures(full, table)
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_boot):
        sample = table.iloc[rng.integers(0, len(table), len(table))]
        sample = sample.set_axis([f"b{i}" for i in range(len(sample))])
        try:
            refit = update_model(model, sample, method, {})
            boot, test = measures(refit, sample), measures(refit, table)
        except (ValueError, np.linalg.LinAlgError):  # a resample too small to update: left out, counted
            continue
        differences.append({key: boot[key] - test[key] for key in apparent})
    frame = pd.DataFrame(differences)
    rows = []
    for key, value in apparent.items():
        optimism = float(frame[key].mean()) if len(frame) else np.nan
        rows.append({"model": model.name, "method": method, "measure": key, "apparent": value, "optimism": optimism,
                     "corrected": value - optimism, "resamples": int(len(frame))})
    return pd.DataFrame(rows)


def external_validate(study: Study, models_dir: Path, n_bootstrap: int | None = None, update: str | None = None,
                      scheduler: str | None = None, progress: Callable[[int, int], None] | None = None,
                      update_bootstrap: int = UPDATE_BOOTSTRAP) -> ExternalValidation:
    """Validate the saved models of ``models_dir`` on every patient of ``study`` (module docstring); write
    ``<output_dir>/external``: features, predictions.csv, evaluation/, provenance.csv, updated_models/ and the
    report."""
    from hccrad.evaluate import EvaluationSettings, evaluate_study
    from hccrad.io import layout
    from hccrad.pipeline.stages import study_table
    from hccrad.survival import load_models
    from hccrad.survival.artifact import save_model
    from hccrad.survival.study import score_models
    from hccrad.survival.updating import UPDATE_METHODS, update_model

    models = load_models(models_dir)
    if not models:
        raise ExternalValidationError(f"no model artifact in {models_dir}: give the models folder of `hccrad fit`")
    if update is not None and update not in UPDATE_METHODS:
        raise ExternalValidationError(f"--update {update!r}: expected one of {', '.join(UPDATE_METHODS)}")
    out_dir = ensure_writable_dir(study.config.output_path / "external")
    provenance = model_provenance(models_dir, models)
    run = external_features(study, models, out_dir, scheduler, progress)
    table = study_table(study, run.out_dir / layout.FEATURE_TABLE) if run is not None else study.table()
    table = table.assign(dataset=EXTERNAL_SET)
    predictions, _imputation, errors = score_models(models, table)
    settings = EvaluationSettings.from_study(study.config, n_bootstrap)
    clinical = study.table().assign(dataset=EXTERNAL_SET)
    evaluation = evaluate_study(predictions, models, clinical, settings, out_dir / "evaluation")
    write_atomic(out_dir / "predictions.csv", predictions.to_csv())
    write_atomic(out_dir / "provenance.csv", provenance.to_csv(index=False))
    result = ExternalValidation(out_dir, evaluation, provenance, predictions,
                                failures=run.failures if run is not None else pd.DataFrame(),
                                domain=domain_by_center(models, table))
    write_atomic(out_dir / "applicability_domain.csv", result.domain.to_csv(index=False))
    if update is not None:
        cohort = {"study": study.config.name, "patients": int(len(table)), "events": int(table["pfs_event"].sum()),
                  "centers": sorted(map(str, table["center"].unique())) if "center" in table else []}
        updated_dir = ensure_writable_dir(out_dir / "updated_models")
        checksums = dict(zip(provenance["model"], provenance["content_sha256"], strict=True))
        for name, model in models.items():
            updated = update_model(model, table, update, cohort, checksums.get(name))
            save_model(updated, updated_dir / layout.model_artifact_name(name))
            result.updated[name] = updated
        after, _, _ = score_models(result.updated, table)
        rows = (_calibration_rows(predictions, models, "frozen", settings.horizons, settings.event_at_horizon,
                                  settings.calibration_baseline)
                + _calibration_rows(after, result.updated, f"updated ({update})", settings.horizons,
                                    settings.event_at_horizon, settings.calibration_baseline))
        result.update_calibration = pd.DataFrame(rows)
        optimism = pd.concat([update_optimism(model, table, update, settings.horizons, settings.event_at_horizon,
                                              settings.calibration_baseline, update_bootstrap, settings.seed)
                              for model in models.values()], ignore_index=True)
        write_atomic(out_dir / "update_calibration.csv", result.update_calibration.to_csv(index=False))
        write_atomic(out_dir / "update_optimism.csv", optimism.to_csv(index=False))
        write_atomic(updated_dir / "predictions.csv", after.to_csv())
    if len(errors):
        write_atomic(out_dir / "scoring_errors.csv", errors.to_csv(index=False))
    from hccrad.report.external import write_external_report

    result.report = write_external_report(study, result)
    return result
