"""Internal validation of the whole modelling pipeline: Harrell's bootstrap estimate of optimism.

Each bootstrap resample of the training patients repeats every fitted step of a model (clinical coding and
imputation, the univariate screen, the correlation filter, the LASSO's cross-validation, the multivariable refit
and the cut-off), by fitting a clone of the model. The model's performance on its own resample (apparent) minus
its performance on the original training patients (test) is that resample's optimism; the mean over resamples
is subtracted from the original model's apparent performance (Harrell, Lee and Mark 1996; TRIPOD 10b).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import clone

from hccrad.evaluate.calibration import brier_scores
from hccrad.evaluate.discrimination import harrell_c, ipcw_auc
from hccrad.evaluate.horizon import DEFAULT_RULE, EventAtHorizon
from hccrad.survival.coxmath import survival_probability
from hccrad.survival.model import CoxRiskModel, make_y


def performance(model: CoxRiskModel, table: pd.DataFrame, horizons: tuple[float, ...],
                rule: EventAtHorizon = DEFAULT_RULE) -> dict[str, float]:
    """Harrell's C, the IPCW AUC and the Brier score at each horizon (an event at a horizon counted as ``rule``
    says), and the calibration slope, of a fitted model on ``table`` (one row per patient with ``pfs_months``,
    ``pfs_event`` and the model's inputs)."""
    from lifelines import CoxPHFitter

    time, event = table["pfs_months"].to_numpy(float), table["pfs_event"].to_numpy(int)
    lp = model.predict(table)
    out = {"c_index": harrell_c(time, event, lp)}
    for horizon in horizons:
        out[f"auc_{horizon:g}m"] = ipcw_auc(time, event, lp, horizon, rule)
    survival = pd.DataFrame(survival_probability(model.baseline_times_, model.baseline_cumhaz_, lp, list(horizons)),
                            columns=list(horizons))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        brier = brier_scores(time, event, survival, list(horizons), rule)
        frame = pd.DataFrame({"lp": lp, "time": time, "event": event})
        out["calibration_slope"] = (float(CoxPHFitter().fit(frame, "time", "event").params_["lp"])
                                    if np.std(lp) > 0 else np.nan)
    out.update({key: value for key, value in brier.items() if key != "integrated_brier"})
    return out


def _one_resample(model: CoxRiskModel, training: pd.DataFrame, horizons: tuple[float, ...],
                  seed: int, rule: EventAtHorizon = DEFAULT_RULE) -> dict[str, float] | None:
    """The optimism of one bootstrap resample (apparent on the resample minus test on the training set)."""
    rng = np.random.default_rng(seed)
    sample = training.iloc[rng.integers(0, len(training), len(training))]
    sample = sample.set_axis([f"{pid}#{k}" for k, pid in enumerate(sample.index)])
    try:
        refit = clone(model).fit(sample, make_y(sample["pfs_months"], sample["pfs_event"]))
        apparent, test = performance(refit, sample, horizons, rule), performance(refit, training, horizons, rule)
    except Exception:  # a resample on which the pipeline cannot fit (too few events) is counted as failed
        return None
    return {key: apparent[key] - test[key] for key in apparent}


class _ResampleProgress:
    """A Dask local-scheduler callback that reports each finished resample to ``report(done, total)``."""

    def __init__(self, report: Callable[[int, int], None], total: int):
        from dask.callbacks import Callback

        self.report, self.total, self.done = report, total, 0
        self.callback = Callback(posttask=self._posttask)

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith("_one_resample"):
            self.done += 1
            self.report(self.done, self.total)

    def __enter__(self):
        self.callback.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.callback.__exit__(*exc)


def stderr_progress(label: str, stream=None) -> Callable[[int, int], None]:
    """A text progress bar on stderr: redrawn in place on a terminal, one line per 10% otherwise."""
    import sys

    stream = stream if stream is not None else sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    state = {"last_decile": -1}

    def report(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        line = f"{label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} resamples"
        if interactive:
            stream.write("\r" + line + ("\n" if done == total else ""))
        elif done * 10 // max(total, 1) > state["last_decile"] or done == total:
            state["last_decile"] = done * 10 // max(total, 1)
            stream.write(line + "\n")
        stream.flush()

    return report


def bootstrap_optimism(model: CoxRiskModel, training: pd.DataFrame, horizons: tuple[float, ...],
                       n_bootstrap: int = 200, seed: int = 20240601, scheduler: str = "processes",
                       progress: Callable[[int, int], None] | None = None,
                       rule: EventAtHorizon = DEFAULT_RULE) -> pd.DataFrame:
    """Apparent, optimism and optimism-corrected performance of ``model`` (fitted on ``training``).

    Parameters
    ----------
    model
        The fitted model; its parameters (``clone``) define the pipeline refitted on each resample.
    training
        The training patients it was fitted on.
    horizons
        Months of the AUC and Brier scores.
    n_bootstrap
        Resamples; resample b uses seed ``seed + b``, so results do not depend on the scheduler.
    scheduler
        Dask's local scheduler for the resamples (``processes``, ``threads`` or ``synchronous``).
    progress
        ``progress(done, total)`` each time a resample finishes, on every scheduler (:func:`stderr_progress`
        draws a bar).
    rule
        The ``event_at_horizon`` rule of the AUC and Brier scores.

    Returns
    -------
    One row per measure: ``apparent``, ``optimism`` (mean over the resamples that could be fitted), ``corrected``
    (apparent - optimism), ``resamples`` used.
    """
    import dask

    apparent = performance(model, training, horizons, rule)
    tasks = [dask.delayed(_one_resample, pure=False)(model, training, horizons, seed + b, rule)
             for b in range(n_bootstrap)]
    if progress is not None:
        with _ResampleProgress(progress, n_bootstrap):
            results = list(dask.compute(*tasks, scheduler=scheduler))
    else:
        results = list(dask.compute(*tasks, scheduler=scheduler))
    usable = [r for r in results if r is not None]
    rows = []
    for key, value in apparent.items():
        optimism = float(np.nanmean([r[key] for r in usable])) if usable else np.nan
        rows.append({"measure": key, "apparent": value, "optimism": optimism, "corrected": value - optimism,
                     "resamples": len(usable)})
    return pd.DataFrame(rows)
