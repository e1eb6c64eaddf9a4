"""`hccrad evaluate`: every statistic and figure of the paper's results, per data set and horizon.

Output folder (``<output_dir>/evaluation``): ``tables/*.csv`` and ``figures/*.png|svg``, listed in
docs/evaluation.md, plus ``evaluation.json`` with the settings and the list of files.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hccrad.evaluate import figures
from hccrad.evaluate.calibration import (
    DEFAULT_CALIBRATION_BASELINE,
    brier_scores,
    calibration_summary,
    grouped_calibration,
    ibs_grid,
    smooth_observed_risk,
)
from hccrad.evaluate.cohort import table_one
from hccrad.evaluate.comparison import (
    censored_nri_idi_with_ci,
    delong_test,
    ipcw_auc_comparison,
    likelihood_ratio_test,
    nri_idi_with_ci,
)
from hccrad.evaluate.config import EvaluationConfig
from hccrad.evaluate.discrimination import (
    binary_outcome_at,
    bootstrap_ci,
    delong_auc,
    harrell_c,
    influence_se,
    ipcw_auc_influence,
    ipcw_auc_with_ci,
    uno_c,
)
from hccrad.evaluate.groups import decision_curve, risk_group_logrank, risk_score_by_outcome, subgroup_auc
from hccrad.evaluate.horizon import DEFAULT_RULE, RULE_CAPTIONS, EventAtHorizon
from hccrad.io import layout
from hccrad.io.config import PAPER_AFP_CUTOFF_NG_ML, StudyConfig
from hccrad.io.files import write_atomic
from hccrad.io.layout import group_column, model_slug, pfs_column, risk_column
from hccrad.survival.config import MODEL_NAMES
from hccrad.survival.coxmath import partial_loglik, survival_probability
from hccrad.survival.model import CoxRiskModel

#: Pairs of Supplementary Table 4 (first vs second).
PAPER_COMPARISONS = (("T", "T&L"), ("C", "C-T&L"), ("T&L", "C-T&L"))
DATASETS = ("training", "validation")


@dataclass
class EvaluationSettings:
    """Everything the evaluation needs: the study's horizons and AFP cut-off with its ``evaluation:`` section."""

    horizons: tuple[float, ...] = (6.0, 12.0)
    n_bootstrap: int = 500
    calibration_groups: int = 5
    seed: int = 20240601
    afp_cutoff: float = PAPER_AFP_CUTOFF_NG_ML
    internal_validation_resamples: int = 0
    event_at_horizon: EventAtHorizon = DEFAULT_RULE
    calibration_baseline: str = DEFAULT_CALIBRATION_BASELINE

    @classmethod
    def from_study(cls, config: StudyConfig, n_bootstrap: int | None = None) -> EvaluationSettings:
        """Settings from a study's YAML; ``n_bootstrap`` (a command-line option) overrides the section's."""
        section = EvaluationConfig.model_validate(config.evaluation)
        return cls(horizons=tuple(config.horizons_months),
                   n_bootstrap=section.n_bootstrap if n_bootstrap is None else n_bootstrap,
                   calibration_groups=section.calibration_groups, seed=section.seed,
                   afp_cutoff=config.afp_cutoff_ng_ml,
                   internal_validation_resamples=section.internal_validation_resamples,
                   event_at_horizon=section.event_at_horizon,
                   calibration_baseline=section.calibration_baseline)


@dataclass
class Evaluation:
    """The evaluation's tables (by name), the figure files written, and the folder they are in."""
    tables: dict[str, pd.DataFrame]
    figures: list[Path] = field(default_factory=list)
    out_dir: Path | None = None


def present_sets(predictions: pd.DataFrame) -> tuple[str, ...]:
    """The data sets (training, validation) that hold patients: an external validation has no training set."""
    return tuple(d for d in DATASETS if (predictions["dataset"] == d).any())


def _subset(predictions: pd.DataFrame, dataset: str) -> pd.DataFrame:
    return predictions[predictions["dataset"] == dataset]


def _scored(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    return frame[frame[risk_column(model)].notna()]


def _per_model_and_set(predictions: pd.DataFrame, models):
    """Each model and data set with that set's scored patients and their time, event and risk score."""
    for model in models:
        for dataset in present_sets(predictions):
            subset = _scored(_subset(predictions, dataset), model)
            yield (model, dataset, subset, subset["pfs_months"].to_numpy(float), subset["pfs_event"].to_numpy(int),
                   subset[risk_column(model)].to_numpy(float))


def discrimination_table(predictions, models, settings) -> pd.DataFrame:
    """Time-dependent IPCW AUC with bootstrap CI per model, data set and horizon."""
    rows = []
    for model, dataset, _subset, time, event, scores in _per_model_and_set(predictions, models):
        for horizon in settings.horizons:
            labels = binary_outcome_at(time, event, horizon, settings.event_at_horizon)
            keep = ~np.isnan(labels)
            row = {"model": model, "dataset": dataset, "horizon": horizon,
                   "event_at_horizon": settings.event_at_horizon}
            if keep.any() and 0 < labels[keep].sum() < keep.sum():
                binary = delong_auc(scores[keep], labels[keep])
                row.update(auc_binary=binary.auc, auc_binary_ci_low=binary.ci_low,
                           auc_binary_ci_high=binary.ci_high, n_cases=binary.n_cases,
                           n_controls=binary.n_controls)
            else:
                row.update(auc_binary=np.nan, auc_binary_ci_low=np.nan, auc_binary_ci_high=np.nan,
                           n_cases=int(np.nansum(labels == 1)), n_controls=int(np.nansum(labels == 0)))
            ipcw = ipcw_auc_with_ci(time, event, scores, horizon, settings.n_bootstrap, settings.seed,
                                    settings.event_at_horizon)
            influence = ipcw_auc_influence(time, event, scores, horizon, settings.event_at_horizon)[1]
            row.update(auc_ipcw=ipcw.auc, auc_ipcw_ci_low=ipcw.ci_low, auc_ipcw_ci_high=ipcw.ci_high,
                       auc_ipcw_se=influence_se(influence))
            rows.append(row)
    return pd.DataFrame(rows)


def concordance_table(predictions, models, settings) -> pd.DataFrame:
    """Harrell's and Uno's C-index per model and data set."""
    rows = []
    for model, dataset, _subset, time, event, scores in _per_model_and_set(predictions, models):
        if event.sum() == 0:
            continue
        tau = float(max(settings.horizons))
        harrell = harrell_c(time, event, scores)
        uno = uno_c(time, event, scores, tau)
        harrell_ci = bootstrap_ci(
            lambda i, t=time, e=event, s=scores: harrell_c(t[i], e[i], s[i]) if e[i].sum() else np.nan,
            len(time), settings.n_bootstrap, settings.seed)
        uno_ci = bootstrap_ci(
            lambda i, t=time, e=event, s=scores, u=tau: _safe(lambda: uno_c(t[i], e[i], s[i], u)),
            len(time), max(100, settings.n_bootstrap // 5), settings.seed)
        rows.append({"model": model, "dataset": dataset, "n": len(time), "events": int(event.sum()),
                     "harrell_c": harrell, "harrell_ci_low": harrell_ci[0], "harrell_ci_high": harrell_ci[1],
                     "uno_c": uno, "uno_tau_months": tau, "uno_ci_low": uno_ci[0], "uno_ci_high": uno_ci[1]})
    return pd.DataFrame(rows)


def _safe(function):
    try:
        return function()
    except Exception:  # a bootstrap sample without usable pairs
        return np.nan


def _paired_scored(predictions, models, settings):
    """For every paper comparison, data set and horizon: the pair and every patient scored by both models."""
    for first, second in PAPER_COMPARISONS:
        if first not in models or second not in models:
            continue
        for dataset in present_sets(predictions):
            subset = _scored(_scored(_subset(predictions, dataset), first), second)
            for horizon in settings.horizons:
                yield first, second, dataset, horizon, subset


def _paired_outcomes(predictions, models, settings):
    """:func:`_paired_scored`'s pairs where both outcomes are present at the horizon, with the patients' binary
    outcome (patients censored before the horizon removed)."""
    for first, second, dataset, horizon, subset in _paired_scored(predictions, models, settings):
        labels = binary_outcome_at(subset["pfs_months"], subset["pfs_event"], horizon, settings.event_at_horizon)
        keep = ~np.isnan(labels)
        if keep.any() and labels[keep].min() != labels[keep].max():
            yield first, second, dataset, horizon, subset[keep], labels[keep]


#: How a comparison test on each data set may be read.
INFERENCE = {"training": "apparent: the models were fitted on these patients; not for inference",
             "validation": "validation: for inference"}
COMPLETE_CASE = "complete case at t (as in the paper): patients censored at or before t are left out"
HAZARD_RATIO_INFERENCE = ("apparent: an unpenalised refit on the training patients that chose the covariates; the "
                          "CIs and p-values ignore the screen and LASSO, so they are too narrow and too small")
IPCW = ("censoring-aware: patients censored at or before t are weighted for (IPCW / Kaplan-Meier), not left "
        "out")


def auc_comparison_table(predictions, models, settings) -> pd.DataFrame:
    """The primary comparison of the paper's model pairs: IPCW time-dependent AUCs at each horizon, their
    difference with an influence-function 95% CI and Wald p (timeROC::compare; docs/evaluation.md)."""
    rows = []
    for first, second, dataset, horizon, subset in _paired_scored(predictions, models, settings):
        test = ipcw_auc_comparison(subset["pfs_months"].to_numpy(float), subset["pfs_event"].to_numpy(int),
                                   subset[risk_column(first)].to_numpy(float),
                                   subset[risk_column(second)].to_numpy(float), horizon,
                                   rule=settings.event_at_horizon)
        rows.append({"comparison": f"{first} vs {second}", "dataset": dataset, "horizon": horizon,
                     "event_at_horizon": settings.event_at_horizon,
                     "auc_first": test.auc_1, "auc_second": test.auc_2, "difference": test.difference,
                     "se": test.se, "ci_low": test.ci_low, "ci_high": test.ci_high, "z": test.z, "p": test.p,
                     "n": test.n, "n_cases": test.n_cases, "n_controls": test.n_controls,
                     "n_censored_before": test.n_censored_before, "censoring": IPCW,
                     "inference": INFERENCE[dataset]})
    return pd.DataFrame(rows)


def delong_table(predictions, models, settings) -> pd.DataFrame:
    """DeLong tests of the paper's model pairs at each horizon (complete cases at the horizon)."""
    rows = []
    for first, second, dataset, horizon, subset, labels in _paired_outcomes(predictions, models, settings):
        test = delong_test(subset[risk_column(first)].to_numpy(), subset[risk_column(second)].to_numpy(), labels)
        rows.append({"comparison": f"{first} vs {second}", "dataset": dataset, "horizon": horizon,
                     "event_at_horizon": settings.event_at_horizon,
                     "auc_first": test.auc_1, "auc_second": test.auc_2, "difference": test.difference,
                     "ci_low": test.ci_low, "ci_high": test.ci_high, "z": test.z, "p": test.p,
                     "n_cases": test.n_cases, "n_controls": test.n_controls,
                     "censoring": COMPLETE_CASE, "inference": INFERENCE[dataset]})
    return pd.DataFrame(rows)


def lrt_table(predictions, fitted: dict[str, CoxRiskModel]) -> pd.DataFrame:
    """Likelihood-ratio tests between nested models on the training set (where they were fitted)."""
    training = _subset(predictions, "training")
    time, event = training["pfs_months"].to_numpy(float), training["pfs_event"].to_numpy(int)
    rows = []
    for reduced, full in (("C", "C-T&L"), ("T", "T&L"), ("T", "C-T&L"), ("T&L", "C-T&L")):
        if reduced not in fitted or full not in fitted:
            continue
        nested = set(fitted[reduced].covariates_) < set(fitted[full].covariates_)
        row = {"reduced": reduced, "full": full, "nested": nested, "statistic": np.nan, "df": np.nan, "p": np.nan,
               "inference": "apparent (training set): the df count the final covariates only, not the univariate "
                            "screen and LASSO that chose them, so the p-value is too small; not for inference"}
        if nested:
            ll_reduced = partial_loglik(time, event, training[risk_column(reduced)].to_numpy(float))
            ll_full = partial_loglik(time, event, training[risk_column(full)].to_numpy(float))
            df = len(fitted[full].covariates_) - len(fitted[reduced].covariates_)
            statistic, p = likelihood_ratio_test(ll_reduced, ll_full, df)
            row.update(statistic=statistic, df=df, p=p)
        rows.append(row)
    return pd.DataFrame(rows)


def risk_at(predictions: pd.DataFrame, model: str, horizon: float) -> np.ndarray:
    """Predicted risk of progression by ``horizon`` months (1 - predicted PFS), shape (n,)."""
    return 1.0 - predictions[pfs_column(model, horizon)].to_numpy(float)


def nri_table(predictions, models, settings) -> pd.DataFrame:
    """NRI and IDI with bootstrap CIs for the paper's model pairs at each horizon: the censoring-aware estimates
    (primary) and, beside them, the paper's complete-case ones."""
    rows = []
    for first, second, dataset, horizon, subset in _paired_scored(predictions, models, settings):
        result = censored_nri_idi_with_ci(subset["pfs_months"].to_numpy(float), subset["pfs_event"].to_numpy(int),
                                          risk_at(subset, first, horizon), risk_at(subset, second, horizon), horizon,
                                          settings.n_bootstrap, settings.seed, settings.event_at_horizon)
        rows.append({"comparison": f"{first} vs {second}", "dataset": dataset, "horizon": horizon,
                     "event_at_horizon": settings.event_at_horizon, **result,
                     "censoring": IPCW, "inference": INFERENCE[dataset]})
    for first, second, dataset, horizon, subset, labels in _paired_outcomes(predictions, models, settings):
        result = nri_idi_with_ci(risk_at(subset, first, horizon), risk_at(subset, second, horizon), labels,
                                 settings.n_bootstrap, settings.seed)
        rows.append({"comparison": f"{first} vs {second}", "dataset": dataset, "horizon": horizon,
                     "event_at_horizon": settings.event_at_horizon, **result,
                     "censoring": COMPLETE_CASE, "inference": INFERENCE[dataset]})
    return pd.DataFrame(rows)


def calibration_tables(predictions, models, settings):
    """Calibration summary (ICI, E50, E90, slope, O/E), grouped and smooth curves per model, set and horizon."""
    summary_rows, group_rows, smooth_rows = [], [], []
    for model, dataset, subset, time, event, _scores in _per_model_and_set(predictions, models):
        for horizon in settings.horizons:
            risk = risk_at(subset, model, horizon)
            key = {"model": model, "dataset": dataset, "horizon": horizon,
                   "event_at_horizon": settings.event_at_horizon}
            rule = settings.event_at_horizon
            try:
                summary = calibration_summary(time, event, subset[risk_column(model)].to_numpy(float), risk, horizon,
                                              rule, settings.calibration_baseline)
                observed = smooth_observed_risk(time, event, risk, horizon, rule, settings.calibration_baseline)
            except Exception as exc:  # too few events for the smooth curve: report why
                summary, observed = {"note": f"not estimable: {exc}"}, None
            summary_rows.append({**key, **summary})
            groups = grouped_calibration(time, event, risk, horizon, settings.calibration_groups, rule)
            group_rows.extend({**key, **row} for row in groups.to_dict("records"))
            if observed is not None:
                smooth_rows.extend({**key, "patient_id": pid, "predicted": p, "observed": o}
                                   for pid, p, o in zip(subset.index, risk, observed, strict=True))
    return pd.DataFrame(summary_rows), pd.DataFrame(group_rows), pd.DataFrame(smooth_rows)


def brier_table(predictions, fitted, settings) -> pd.DataFrame:
    """Brier scores at the horizons and the integrated Brier score per model and data set."""
    rows = []
    grid = np.union1d(np.asarray(settings.horizons, float), ibs_grid(settings.horizons))
    for name, model in fitted.items():
        for dataset in present_sets(predictions):
            subset = _scored(_subset(predictions, dataset), name)
            scores = subset[risk_column(name)].to_numpy(float)
            survival = pd.DataFrame(survival_probability(model.baseline_times_, model.baseline_cumhaz_, scores, grid),
                                    columns=grid, index=subset.index)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = _safe(lambda s=subset, v=survival: brier_scores(s["pfs_months"], s["pfs_event"], v,
                                                                        list(settings.horizons),
                                                                        settings.event_at_horizon))
            rows.append({"model": name, "dataset": dataset, "event_at_horizon": settings.event_at_horizon,
                         **(values if isinstance(values, dict) else {}),
                         "ibs_from_months": float(ibs_grid(settings.horizons)[0]),
                         "ibs_to_months": float(max(settings.horizons))})
    return pd.DataFrame(rows)


def box_table(predictions, models, settings) -> pd.DataFrame:
    """Risk scores of patients with and without progression by each horizon, with the Mann-Whitney test."""
    rows = []
    for model, dataset, subset, _time, _event, _scores in _per_model_and_set(predictions, models):
        for horizon in settings.horizons:
            rows.append({"model": model, "dataset": dataset, "horizon": horizon,
                         "event_at_horizon": settings.event_at_horizon,
                         **risk_score_by_outcome(subset, risk_column(model), horizon, settings.event_at_horizon)})
    return pd.DataFrame(rows)


def _cutoff_columns(cutoff: dict, dataset: str) -> dict:
    """The cut-off's method and value, and on the training set (where a maxstat cut-off was chosen) the log-rank
    p-value corrected for the search (Lausen and Schumacher 1992)."""
    columns = {"cutoff_method": cutoff.get("method"), "cutoff": cutoff.get("value")}
    if dataset == "training" and "p_corrected" in cutoff:
        columns["logrank_p_corrected_for_selection"] = cutoff["p_corrected"]
    return columns


def internal_validation_table(fitted: dict[str, CoxRiskModel], models: list[str], training: pd.DataFrame,
                              settings: EvaluationSettings) -> pd.DataFrame:
    """Apparent, optimism and corrected performance per model (:func:`hccrad.evaluate.internal.bootstrap_optimism`),
    resamples run on Dask's local processes, seeded."""
    from hccrad.evaluate.internal import bootstrap_optimism, stderr_progress

    frames = []
    for model in models:
        frame = bootstrap_optimism(fitted[model], training, tuple(settings.horizons),
                                   settings.internal_validation_resamples, settings.seed,
                                   progress=stderr_progress(f"internal validation {model}"),
                                   rule=settings.event_at_horizon)
        frame.insert(0, "model", model)
        frames.append(frame.assign(event_at_horizon=settings.event_at_horizon))
    return pd.concat(frames, ignore_index=True)


def evaluate_study(predictions: pd.DataFrame, fitted: dict[str, CoxRiskModel], clinical: pd.DataFrame | None = None,
                   settings: EvaluationSettings | None = None, out_dir: Path | None = None,
                   training_table: pd.DataFrame | None = None) -> Evaluation:
    """Compute every table (and, with ``out_dir``, every figure) of the results.

    Parameters
    ----------
    predictions
        ``predictions.csv`` of the models stage (dataset, pfs_months, pfs_event, risk_*, group_*, pfs_*m_*).
    fitted
        The fitted models (artifacts), for hazard ratios, baseline survival and the LR tests.
    clinical
        Clinical columns (afp, bclc, child_pugh, treatment) per patient, for the subgroup analysis.
    training_table
        The table the models were fitted on (training patients), for the internal validation when
        ``settings.internal_validation_resamples`` > 0.
    """
    settings = settings or EvaluationSettings()
    models = [m for m in MODEL_NAMES if m in fitted and risk_column(m) in predictions]
    tables: dict[str, pd.DataFrame] = {}
    hazards = []
    for name in models:
        frame = fitted[name].hazard_ratios_.copy()
        frame.insert(0, "model", name)
        hazards.append(frame)
    tables["hazard_ratios"] = pd.concat(hazards, ignore_index=True).assign(inference=HAZARD_RATIO_INFERENCE)
    if clinical is not None and "dataset" in clinical:
        tables["table1"] = table_one(clinical, settings.afp_cutoff)
    if settings.internal_validation_resamples and training_table is not None:
        tables["internal_validation"] = internal_validation_table(fitted, models, training_table, settings)
    tables["scoring"] = pd.DataFrame([
        {"model": m, "dataset": d, "patients": int(len(_subset(predictions, d))),
         "scored": int(len(_scored(_subset(predictions, d), m))),
         "unscored": int(len(_subset(predictions, d)) - len(_scored(_subset(predictions, d), m)))}
        for m in models for d in present_sets(predictions)])
    tables["discrimination"] = discrimination_table(predictions, models, settings)
    tables["concordance"] = concordance_table(predictions, models, settings)
    tables["auc_comparison"] = auc_comparison_table(predictions, models, settings)
    tables["delong"] = delong_table(predictions, models, settings)
    tables["likelihood_ratio"] = lrt_table(predictions, fitted)
    tables["nri_idi"] = nri_table(predictions, models, settings)
    tables["calibration"], tables["calibration_groups"], tables["calibration_smooth"] = calibration_tables(
        predictions, models, settings)
    tables["brier"] = brier_table(predictions, {m: fitted[m] for m in models}, settings)
    tables["risk_score_boxes"] = box_table(predictions, models, settings)
    tables["risk_groups"] = pd.DataFrame([{"model": m, "dataset": d,
                                           **risk_group_logrank(_scored(_subset(predictions, d), m), group_column(m)),
                                           **_cutoff_columns(fitted[m].cutoff_, d)}
                                          for m in models for d in present_sets(predictions)])
    curves = []
    for dataset in present_sets(predictions):
        subset = _subset(predictions, dataset).dropna(subset=[risk_column(m) for m in models])
        for horizon in settings.horizons:
            curve = _safe(lambda s=subset, h=horizon: decision_curve(
                s.assign(**{f"_risk_{m}": risk_at(s, m, h) for m in models}), {m: f"_risk_{m}" for m in models}, h,
                rule=settings.event_at_horizon))
            if isinstance(curve, pd.DataFrame):
                curves.append(curve.assign(dataset=dataset, horizon=horizon,
                                           event_at_horizon=settings.event_at_horizon))
    tables["decision_curves"] = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    if clinical is not None and "C-T&L" in models:
        merged = predictions.join(clinical[["afp", "bclc", "child_pugh", "treatment"]], how="left")
        subgroup_rows, test_rows = [], []
        for dataset in present_sets(predictions):
            for horizon in settings.horizons:
                rows, tests = subgroup_auc(_scored(_subset(merged, dataset), "C-T&L"), risk_column("C-T&L"), horizon,
                                           settings.afp_cutoff, settings.event_at_horizon)
                subgroup_rows.append(rows.assign(dataset=dataset, horizon=horizon,
                                                 event_at_horizon=settings.event_at_horizon))
                test_rows.append(tests.assign(dataset=dataset, horizon=horizon,
                                              event_at_horizon=settings.event_at_horizon))
        tables["subgroups"] = pd.concat(subgroup_rows, ignore_index=True)
        tables["subgroup_tests"] = pd.concat(test_rows, ignore_index=True)
    evaluation = Evaluation(tables, [], out_dir)
    if out_dir is not None:
        write_evaluation(evaluation, predictions, models, settings)
    return evaluation


def write_evaluation(evaluation: Evaluation, predictions: pd.DataFrame, models: list[str],
                     settings: EvaluationSettings) -> None:
    """Write every table (CSV), figure (PNG and SVG) and ``evaluation.json`` to ``evaluation.out_dir``."""
    out_dir = Path(evaluation.out_dir)
    tables_dir, figures_dir = out_dir / layout.TABLES, out_dir / layout.FIGURES
    for name, table in evaluation.tables.items():
        write_atomic(tables_dir / f"{name}.csv", table.to_csv(index=False))
    tables = evaluation.tables
    paths = figures.forest_plot(tables["hazard_ratios"], figures_dir)
    for horizon in settings.horizons:
        for dataset in present_sets(predictions):
            tag = f"{dataset}_{horizon:g}m"
            paths += figures.roc_figure(predictions, models, horizon, dataset, tables["discrimination"], figures_dir,
                                        f"roc_all_{tag}", settings.event_at_horizon)
            pair = [m for m in ("T", "T&L") if m in models]
            if pair:
                paths += figures.roc_figure(predictions, pair, horizon, dataset, tables["discrimination"], figures_dir,
                                            f"roc_T_vs_TL_{tag}", settings.event_at_horizon)
            for group_name, group in (("T_vs_TL", pair), ("all", models)):
                entries = _calibration_entries(tables, group, dataset, horizon)
                if entries:
                    paths += figures.calibration_figure(entries, f"{dataset.capitalize()}, {horizon:g}-month PFS",
                                                        figures_dir, f"calibration_{group_name}_{tag}")
            box_models = [m for m in ("C", "T&L", "C-T&L") if m in models]
            if box_models:
                paths += figures.box_figure(predictions, box_models, horizon, dataset, tables["risk_score_boxes"],
                                            figures_dir, f"risk_boxes_{tag}", settings.event_at_horizon)
            if "subgroups" in tables:
                rows = tables["subgroups"][(tables["subgroups"]["dataset"] == dataset)
                                           & (tables["subgroups"]["horizon"] == horizon)]
                tests = tables["subgroup_tests"][(tables["subgroup_tests"]["dataset"] == dataset)
                                                 & (tables["subgroup_tests"]["horizon"] == horizon)]
                paths += figures.subgroup_figure(rows, tests, f"C-T&L subgroups, {dataset}, {horizon:g} months",
                                                 figures_dir, f"subgroups_{tag}")
            curves = tables["decision_curves"]
            if len(curves):
                rows = curves[(curves["dataset"] == dataset) & (curves["horizon"] == horizon)]
                if len(rows):
                    paths += figures.decision_figure(rows, f"Decision curves, {dataset}, {horizon:g} months",
                                                     figures_dir, f"decision_{tag}")
    for model in models:
        for dataset in present_sets(predictions):
            logrank = tables["risk_groups"][(tables["risk_groups"]["model"] == model)
                                            & (tables["risk_groups"]["dataset"] == dataset)].iloc[0].to_dict()
            paths += figures.km_figure(predictions, model, dataset, logrank, figures_dir,
                                       f"km_{model_slug(model)}_{dataset}")
    evaluation.figures = paths
    write_atomic(out_dir / layout.EVALUATION_SUMMARY, json.dumps({
        "settings": settings.__dict__, "event_at_horizon": RULE_CAPTIONS[settings.event_at_horizon],
        "models": models,
        "tables": sorted(f"{layout.TABLES}/{name}.csv" for name in tables),
        "figures": sorted(str(p.relative_to(out_dir)) for p in paths)}, indent=2, default=str))


def _calibration_entries(tables, models, dataset, horizon):
    entries = []
    for model in models:
        key = (tables["calibration"]["model"] == model) & (tables["calibration"]["dataset"] == dataset) & (
            tables["calibration"]["horizon"] == horizon)
        summary = tables["calibration"][key]
        if summary.empty or "ici" not in summary or not np.isfinite(summary["ici"].iloc[0]):
            continue
        groups = tables["calibration_groups"]
        groups = groups[(groups["model"] == model) & (groups["dataset"] == dataset) & (groups["horizon"] == horizon)]
        smooth = tables["calibration_smooth"]
        smooth = smooth[(smooth["model"] == model) & (smooth["dataset"] == dataset) & (smooth["horizon"] == horizon)]
        entries.append((model, groups, smooth if len(smooth) else None, summary.iloc[0].to_dict()))
    return entries
