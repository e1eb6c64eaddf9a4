"""The methods paragraph and the TRIPOD+AI checklist, written from the run's own files.

Every number in ``methods.md`` comes from a file the stages wrote (the manifest, the clinical table, the feature
table and its run record, the models' selection logs and artifacts, the evaluation's settings); a setting changed
in the manifest changes the text. ``tripod_ai.md`` lists the 27 items of the TRIPOD+AI checklist (Collins et al.,
BMJ 2024;385:e078378), paraphrased, with where this run's outputs address each, or that the authors must complete it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad.io.files import write_atomic
from hccrad.io.manifest import Study
from hccrad.report.formatting import format_horizon


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def selection_counts(log: pd.DataFrame) -> dict[str, int]:
    """How many image features each selection step saw and kept, from a model's selection log: ``candidates``
    (every feature of the model's families read), ``robust`` (after the robustness filter), ``screened`` (passing
    the univariate screen), ``uncorrelated`` (after the correlation filter), ``lasso`` (kept by the LASSO) and
    ``final`` (in the multivariable model, clinical factors included)."""
    def count(step: str, action: str | None = None) -> int:
        rows = log[log["step"] == step]
        return int(len(rows) if action is None else (rows["action"] == action).sum())

    removed_early = count("missing") + count("near_constant") + count("robustness")
    screened = count("univariate", "kept")
    return {"candidates": count("univariate") + removed_early, "robust": count("univariate") + count("missing")
            + count("near_constant"), "screened": screened, "uncorrelated": screened - count("correlation", "removed"),
            "lasso": count("lasso", "kept"), "final": count("multivariable", "kept")}


def cohort_text(study: Study) -> str:
    table = study.table()
    rows = []
    for center, part in table.groupby("center"):
        sets = ", ".join(f"{len(p)} {dataset} ({int(p['pfs_event'].sum())} progressions)"
                         for dataset, p in part.groupby("dataset"))
        rows.append(f"{center}: {sets}")
    training = table[table["dataset"] == "training"]
    validation = table[table["dataset"] == "validation"]
    split = study.config.split.model_dump()
    how = (f"the centers {', '.join(split['validation_centers'])} formed the external validation set"
           if split.get("validation_centers") else f"a random {split.get('validation_fraction')} of the patients "
                                                   "formed the validation set")
    return (f"The study included {len(table)} patients from {table['center'].nunique()} centers ({'; '.join(rows)}); "
            f"{how}. The training set held {len(training)} patients with {int(training['pfs_event'].sum())} "
            f"progressions, the validation set {len(validation)} with {int(validation['pfs_event'].sum())}. The "
            f"outcome was progression-free survival (PFS) in months; predictions were evaluated at "
            f"{' and '.join(format_horizon(h) for h in study.config.horizons_months)}.")


def segmentation_text(study: Study) -> str:
    predicted = study.config.layout.segmentation_dir / "predictions"
    if predicted.is_dir() and any(predicted.iterdir()):
        from hccrad.segment.nnunet import SegmentationConfig

        config = SegmentationConfig.model_validate(study.config.segmentation)
        return ("Masks the manifest did not give were drawn by nnU-Net v2 (3d_fullres) trained with hccrad's paper "
                f"configuration ({json.dumps(config.model_dump(mode='json'), default=str)}), post-processed by "
                "keeping the largest tumor component and filling holes.")
    return ("The liver, tumor and portal-vein masks were the reference masks given with the study (no automatic "
            "segmentation was used).")


def _versions_text(versions: str, plan: str) -> str:
    """``0.1.0|hccrad-engine 4|pyradiomics v3.1.4`` and the engine's plan as
    ``0.1.0 (hccrad-engine 4, pyradiomics v3.1.4; <plan>)``."""
    first, *rest = versions.split("|")
    return f"{first} ({'; '.join(filter(None, [', '.join(rest), plan]))})"


def features_text(study: Study) -> str:
    from hccrad.features.config import FeatureConfig
    from hccrad.features.extract import describe_plan, engine_version

    config = FeatureConfig.model_validate(study.config.features)
    params = config.radiomics_params(study.config.base_dir)
    settings = params.get("setting") or {}
    record = _read_json(study.config.layout.features_dir / "run.json")
    plan = record.get("engine_plan")
    def image_type(name: str, custom: dict | None) -> str:
        sigmas = (custom or {}).get("sigma") or []
        return f"{name} (sigma {', '.join(f'{s:g}' for s in sigmas)} mm)" if sigmas else name

    image_types = ", ".join(image_type(name, custom)
                            for name, custom in (params.get("imageType") or {"Original": {}}).items())
    classes = ", ".join(params.get("featureClass") or ["all"])
    resampling = (f"resampled to {' x '.join(f'{s:g}' for s in settings['resampledPixelSpacing'])} mm (x, y, z) "
                  f"with {settings.get('interpolator', 'sitkBSpline')}" if settings.get("resampledPixelSpacing")
                  else "on each CT's native grid")
    discretisation = (f"a fixed bin count of {settings['binCount']}" if settings.get("binCount")
                      else f"a fixed bin width of {settings.get('binWidth', 25):g} HU")
    table_path = study.config.layout.feature_table
    n_features = ""
    if table_path.is_file():
        columns = pd.read_parquet(table_path).columns
        tumor = sum(c.startswith("Tumor_") for c in columns)
        liver = sum(c.startswith(("Rliver_", "PV_")) for c in columns)
        n_features = f" This gave {tumor} tumor and {liver} remnant-liver features per patient."
    return (f"Features were computed for the tumor (its largest connected component) and the remnant liver "
            f"parenchyma (liver minus every tumor voxel) by hccrad "
            f"{_versions_text(engine_version(config.engine), describe_plan(plan) if plan else '')}, "
            f"PyRadiomics' definitions, "
            f"{resampling}, {discretisation}, image types {image_types}, feature classes {classes}; the CT was "
            f"{'cast to float32' if config.cast_to_float32 else 'used as stored'}. The morphological factors of "
            f"Supplementary Table 2 were computed on the native grid, with the attenuation at a rate of q defined as "
            f"{'p1 + q (p99 - p1)' if config.attenuation_rate == 'robust_range' else 'min + q (max - min)'} of the "
            f"region's HU.{n_features}")


def selection_text(study: Study) -> str:
    from hccrad.survival import ModelConfig

    config = ModelConfig.for_study(study.config)
    models_dir = study.config.layout.models_dir
    parts = []
    order = {"C": 0, "T": 1, "T&L": 2, "C-T&L": 3}
    logs = {path.stem.replace("_selection_log", "").replace("_", "&"): path
            for path in models_dir.glob("*_selection_log.csv")}
    for name, path in sorted(logs.items(), key=lambda item: (order.get(item[0], 9), item[0])):
        counts = selection_counts(pd.read_csv(path))
        if counts["candidates"]:
            robust = (f", {counts['robust']} robust" if counts["robust"] != counts["candidates"] else "")
            parts.append(f"{name}: {counts['candidates']} candidate features{robust}, {counts['screened']} passing "
                         f"the univariate screen, {counts['uncorrelated']} after the correlation filter, "
                         f"{counts['lasso']} kept by the LASSO, {counts['final']} covariates in the final model")
        else:
            parts.append(f"{name}: the clinical factors only ({counts['final']} covariates)")
    robustness = ""
    artifact = _read_json(models_dir / "T_L.json").get("robustness_filter")
    if artifact:
        robustness = (f" Before the screen, image features whose {artifact['icc_form']} over "
                      f"{artifact['n_perturbations']} perturbations of {artifact['n_patients']} training patients was "
                      f"below {artifact['min_icc']:g} were removed ({artifact['removed']} for T&L).")
    return (f"Selection used the training patients only.{robustness} Image features were standardised with the "
            f"training mean and SD and screened by univariate Cox regression (Wald p < {config.univariate_p:g}); of "
            f"pairs correlated above |r| = {config.correlation_threshold:g} the weaker was removed; a LASSO-Cox "
            f"({config.lasso_folds}-fold cross-validation, {config.lasso_rule}, at most {config.max_features} "
            f"features) chose the model's features, refitted by an unpenalised Cox model with Breslow's baseline; "
            f"C-T&L combined the clinical factors with the image features ({config.c_tl_mode}). "
            "Per model: " + "; ".join(parts) + f". Risk groups were split at the training {config.risk_cutoff} risk "
            "score. " + coding_text(_read_json(models_dir / "C.json").get("clinical_coding")
                                    or _read_json(models_dir / "C-T_L.json").get("clinical_coding"))
            + " " + MISSING_DATA_TEXT)


#: How missing inputs were handled (TRIPOD+AI item 11), as the models do it.
MISSING_DATA_TEXT = (
    "Missing data: a missing image feature took the training patients' median and a missing clinical factor the "
    "training median (or mode) of its coded value, both estimated on the training patients only and stored in the "
    "model (models/imputation.csv lists every patient and input imputed); no other imputation was made, and a "
    "patient without a CT or mask was left out of the image models, listed with the reason. For a new patient, a "
    "missing input is refused unless imputation is asked for explicitly.")


def coding_text(spec: dict | None) -> str:
    """How the clinical factors were coded (TRIPOD+AI item 12b), from a model's recorded coding."""
    if not spec:
        return "No clinical factor was used."
    afp = (f"AFP as a binary factor, at or above {spec.get('afp_cutoff_ng_ml', 400):g} ng/mL against below"
           if spec.get("afp") == "cutoff" else "AFP as log10(ng/mL), per unit")
    child_pugh = ("Child-Pugh grade as one ordinal covariate (A = 0, B = 1, C = 2, per grade)"
                  if spec.get("child_pugh") == "ordinal" else
                  f"Child-Pugh grade as indicators against A ({', '.join(spec.get('child_pugh_levels') or [])})")
    bclc = ("BCLC stage as one ordinal covariate (0 = 0, A = 1, B = 2, C = 3, D = 4, per stage)"
            if spec.get("bclc") == "ordinal" else
            f"BCLC stage as indicators against the reference ({', '.join(spec.get('bclc_levels') or [])})")
    levels = ", ".join(spec.get("treatment_levels") or [])
    treatment = (f"treatment style as indicators of {levels} against {spec.get('treatment_reference')}"
                 if levels else f"treatment style with the single level {spec.get('treatment_reference')}")
    return f"Coding of the clinical factors: {afp}; {child_pugh}; {bclc}; {treatment}."


def statistics_text(study: Study) -> str:
    from hccrad.evaluate.config import EvaluationConfig
    from hccrad.evaluate.horizon import RULE_CAPTIONS

    config = EvaluationConfig.model_validate(study.config.evaluation)
    # the settings the evaluation actually ran with (a command-line option may have changed the manifest's)
    ran = _read_json(study.config.layout.evaluation_summary).get("settings") or {}
    n_bootstrap, seed = ran.get("n_bootstrap", config.n_bootstrap), ran.get("seed", config.seed)
    groups, rule = ran.get("calibration_groups", config.calibration_groups), ran.get("event_at_horizon",
                                                                                     config.event_at_horizon)
    rule_text = RULE_CAPTIONS[rule].split(": ", 1)[1]
    return ("Discrimination: Harrell's C-index (lifelines), Uno's C (scikit-survival), and the time-dependent "
            "cumulative/dynamic AUC with inverse-probability-of-censoring weights (as R's riskRegression::Score; "
            "influence-function standard errors); the paper's DeLong test (as R's pROC::roc.test) on the patients "
            "whose status at the horizon is known, beside the censoring-aware comparison of the IPCW AUCs. "
            f"At a horizon t, {rule_text} (hccrad's event_at_horizon = {rule}). Calibration: grouped Kaplan-Meier "
            f"observed risk ({groups} groups), integrated calibration index and calibration slope (as "
            "McLernon et al. 2023); Brier score; decision curves; NRI and IDI; subgroup AUCs with a heterogeneity "
            f"test; confidence intervals by {n_bootstrap} bootstrap resamples (seed {seed}).")


def software_text() -> str:
    from hccrad.io.provenance import software_versions

    return "Software: " + ", ".join(f"{name} {version}" for name, version in software_versions().items()) + "."


def methods_sections(study: Study) -> list[tuple[str, str]]:
    """(heading, paragraph) of the methods, in order."""
    sections = [("Patients and outcome", cohort_text(study))]
    if study.config.require_images:
        sections += [("Segmentation", segmentation_text(study)), ("Features", features_text(study))]
    sections += [("Model development", selection_text(study)), ("Statistical analysis", statistics_text(study)),
                 ("Software", software_text())]
    return sections


def _write_text(folder: Path, name: str, title: str, sections: list[tuple[str, str]]) -> None:
    import docx

    markdown = [f"# {title}", ""]
    document = docx.Document()
    document.add_heading(title, level=1)
    for heading, text in sections:
        markdown += [f"## {heading}", "", text, ""]
        document.add_heading(heading, level=2)
        document.add_paragraph(text)
    write_atomic(folder / f"{name}.md", "\n".join(markdown))
    buffer = io.BytesIO()
    document.save(buffer)
    write_atomic(folder / f"{name}.docx", buffer.getvalue())


def write_methods(study: Study, folder: Path, tables: list | None = None) -> None:
    """``methods.md`` and ``methods.docx``."""
    del tables  # the text reads the run's files itself
    _write_text(folder, "methods", "Methods (written by hccrad from this run)", methods_sections(study))


#: TRIPOD+AI's 27 items (Collins et al., BMJ 2024), paraphrased: (number, topic, what it asks).
TRIPOD_AI_ITEMS = (
    ("1", "Title", "Identify the study as developing or evaluating a prediction model, with its target population "
                   "and outcome."),
    ("2", "Abstract", "A structured summary (see TRIPOD+AI for Abstracts)."),
    ("3a", "Background", "The healthcare context and rationale for the model, with existing models."),
    ("3b", "Background", "The target population and the model's intended purpose and users in the care pathway."),
    ("3c", "Background", "Known health inequalities between sociodemographic groups."),
    ("4", "Objectives", "The objectives: development, evaluation, or both."),
    ("5a", "Data", "The sources of data for development and evaluation, the rationale, and representativeness."),
    ("5b", "Data", "The dates of data collection: start and end of accrual, end of follow-up."),
    ("6a", "Participants", "The setting, and the number and location of centres."),
    ("6b", "Participants", "The eligibility criteria."),
    ("6c", "Participants", "The treatments received."),
    ("7", "Data preparation", "Pre-processing and quality checks of the data, and whether they were similar across "
                              "groups."),
    ("8a", "Outcome", "The outcome's definition, how and when it was assessed."),
    ("8b", "Outcome", "The qualifications of the outcome's assessors, when the outcome needs judgement."),
    ("8c", "Outcome", "Blinding of the outcome's assessment."),
    ("9a", "Predictors", "The choice of initial predictors and any pre-selection."),
    ("9b", "Predictors", "The predictors' definitions, how and when they were measured."),
    ("9c", "Predictors", "The qualifications of the predictors' assessors and their blinding."),
    ("10", "Sample size", "How the sample size was arrived at, and whether it was sufficient."),
    ("11", "Missing data", "How missing data were handled."),
    ("12a", "Analytical methods", "How the data were used (development, evaluation), and any resampling."),
    ("12b", "Analytical methods", "How predictors were handled (functional form, transformation, standardisation)."),
    ("12c", "Analytical methods", "The type of model, its building steps and hyperparameters, internal "
                                  "validation."),
    ("12d", "Analytical methods", "Heterogeneity of estimates and performance across clusters (centres)."),
    ("12e", "Analytical methods", "The performance measures (discrimination, calibration, clinical utility)."),
    ("12f", "Analytical methods", "Any model updating from the evaluation."),
    ("12g", "Analytical methods", "For evaluation, how the predictions were calculated."),
    ("13", "Class imbalance", "Any method for class imbalance and its rationale, and recalibration."),
    ("14", "Fairness", "Approaches to address the model's fairness, and their rationale."),
    ("15", "Model output", "The model's output (probabilities, groups) and any thresholds with their rationale."),
    ("16", "Training versus evaluation", "Differences between the development and evaluation data."),
    ("17", "Ethical approval", "The ethics committee and consent."),
    ("18a", "Open science", "Funding."),
    ("18b", "Open science", "Conflicts of interest."),
    ("18c", "Open science", "The protocol, and where it can be accessed."),
    ("18d", "Open science", "Registration."),
    ("18e", "Open science", "Data availability."),
    ("18f", "Open science", "Code availability."),
    ("19", "Patient and public involvement", "Patient and public involvement."),
    ("20a", "Participants", "The flow of participants, with and without the outcome, and the follow-up."),
    ("20b", "Participants", "The characteristics of the participants, overall and per source."),
    ("20c", "Participants", "For evaluation, the predictors' distribution compared with the development data."),
    ("21", "Model development", "The number of participants and outcome events in each analysis."),
    ("22", "Model specification", "The full model (coefficients, baseline survival) for individual predictions."),
    ("23a", "Model performance", "Performance with confidence intervals, and in key subgroups."),
    ("23b", "Model performance", "Heterogeneity of performance across clusters."),
    ("24", "Model updating", "The results of any model updating."),
    ("25", "Interpretation", "The interpretation of the main results, including fairness."),
    ("26", "Limitations", "The limitations and their effect on bias, uncertainty and generalisability."),
    ("27a", "Usability", "How poor-quality or missing inputs should be handled when the model is used."),
    ("27b", "Usability", "Whether users interact with the input data, and the expertise they need."),
    ("27c", "Usability", "The next steps for research, towards applicability and generalisability."),
)

AUTHORS = "to be completed by the authors"


def tripod_answers(study: Study) -> dict[str, str]:
    """Where this run's outputs address each TRIPOD+AI item (by the paper folder's files and the report's
    sections), or that the authors must complete it."""
    images = study.config.require_images
    return {
        "1": f"{AUTHORS} (a prognostic Cox model of PFS after treatment in HCC; methods.md, 'Patients and outcome')",
        "2": AUTHORS + " (summary_c_index_auc for the results)",
        "3a": AUTHORS, "3b": AUTHORS, "3c": AUTHORS,
        "4": AUTHORS + " (the run develops the C, T, T&L and C-T&L models and evaluates them on the validation set)",
        "5a": "methods.md, 'Patients and outcome'; table1; report section 1", "5b": AUTHORS + " (dates are not in the "
        "manifest)",
        "6a": "methods.md, 'Patients and outcome' (centers and sets); supplementary_table1" if images else
        "methods.md, 'Patients and outcome'",
        "6b": AUTHORS + " (the manifest's validation lists refused rows: manifest_issues.csv)",
        "6c": "table1 (treatment style)",
        "7": ("methods.md, 'Segmentation' and 'Features'; report section 3 (QC gallery, image checks), "
              "features/failures.csv") if images else "report section 1; manifest_issues.csv",
        "8a": "methods.md, 'Patients and outcome' (PFS in months; the status at each horizon in 'Statistical "
              "analysis')",
        "8b": AUTHORS, "8c": AUTHORS,
        "9a": "methods.md, 'Features' and 'Model development'; table2, table3",
        "9b": "methods.md, 'Features' (PyRadiomics definitions, settings); docs/features.md" if images else
        "methods.md, 'Model development'",
        "9c": AUTHORS + " (masks: methods.md, 'Segmentation')",
        "10": AUTHORS + " (patients and events: methods.md, 'Patients and outcome')",
        "11": "models/imputation.csv (training medians and modes); methods.md, 'Model development'",
        "12a": "methods.md, 'Patients and outcome' (split) and 'Model development' (training patients only)",
        "12b": "methods.md, 'Model development' (standardisation, coding of the clinical factors)",
        "12c": "methods.md, 'Model development'; models/*_selection_log.csv",
        "12d": "report section 5 (performance per set); " + AUTHORS + " for heterogeneity across centers",
        "12e": "methods.md, 'Statistical analysis'",
        "12f": "not done (no updating)",
        "12g": "methods.md, 'Model development' (linear predictor, Breslow baseline); models/*.json",
        "13": "not applicable (time-to-event outcome; no resampling for imbalance)",
        "14": AUTHORS + " (subgroups: figure4_subgroups)",
        "15": "methods.md, 'Model development' (risk score, risk groups at the training cut-off); docs/new-patient.md",
        "16": "table1 (training versus validation, with tests)",
        "17": AUTHORS, "18a": AUTHORS, "18b": AUTHORS, "18c": AUTHORS, "18d": AUTHORS,
        "18e": AUTHORS, "18f": "hccrad (open source); methods.md, 'Software' for the versions", "19": AUTHORS,
        "20a": "methods.md, 'Patients and outcome'; report section 1 (every patient, manifest errors)",
        "20b": "table1; supplementary_table1" if images else "table1",
        "20c": "table1; table2 (training versus validation)",
        "21": "methods.md, 'Model development' (counts per step); summary_c_index_auc (patients, events)",
        "22": "models/*.json (coefficients, baseline cumulative hazard); figure1_hazard_ratios",
        "23a": "summary_c_index_auc; table4; figure2_roc_calibration; figure4_subgroups",
        "23b": AUTHORS + " (per-center performance is not tabulated)",
        "24": "not done (no updating)",
        "25": AUTHORS, "26": AUTHORS + " (the HR intervals ignore the selection: table footnotes)",
        "27a": "docs/new-patient.md (missing inputs refused or imputed; extrapolation flagged)",
        "27b": "docs/new-patient.md (hccrad predict, the web app)",
        "27c": AUTHORS,
    }


def write_tripod(study: Study, folder: Path) -> None:
    """``tripod_ai.md`` and ``tripod_ai.docx``: the checklist with where each item is addressed."""
    import docx

    answers = tripod_answers(study)
    lines = ["# TRIPOD+AI checklist", "", "Collins GS et al. TRIPOD+AI statement. BMJ 2024;385:e078378. Items "
             "paraphrased; 'where' names this run's outputs (paper folder files, report sections) or what the "
             "authors must add.", "", "| item | topic | asks for | where |", "|---|---|---|---|"]
    document = docx.Document()
    document.add_heading("TRIPOD+AI checklist", level=1)
    grid = document.add_table(rows=1, cols=4)
    grid.style = "Table Grid"
    for cell, name in zip(grid.rows[0].cells, ("item", "topic", "asks for", "where"), strict=True):
        cell.text = name
    for number, topic, asks in TRIPOD_AI_ITEMS:
        lines.append(f"| {number} | {topic} | {asks} | {answers[number]} |")
        cells = grid.add_row().cells
        for cell, text in zip(cells, (number, topic, asks, answers[number]), strict=True):
            cell.text = text
    write_atomic(folder / "tripod_ai.md", "\n".join(lines) + "\n")
    buffer = io.BytesIO()
    document.save(buffer)
    write_atomic(folder / "tripod_ai.docx", buffer.getvalue())
