"""ComBat harmonization of image features across centers (Johnson, Li and Rabinovic 2007).

The location/scale model is fitted with neuroCombat (empirical Bayes, parametric) on the training patients;
the fitted parameters are kept as plain numbers so that any patient from a training center can be
harmonized later. neuroCombat's own ``neuroCombatFromTraining`` does not run under numpy 2, so applying the
parameters is written here: for a patient of center ``b``,
``x* = ((x - mean) / sd - gamma*_b) / sqrt(delta*_b) * sd + mean`` with the pooled ``mean`` and ``sd``,
exactly what neuroCombat does to its training data (checked in the tests).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import pandas as pd


class HarmonizationError(ValueError):
    """A patient's center has no fitted ComBat parameters."""


def fit_combat(features: pd.DataFrame, centers: pd.Series) -> dict[str, Any]:
    """Fit ComBat on training ``features`` (patients x features) grouped by ``centers``."""
    from neuroCombat import neuroCombat

    batches = centers.astype(str).to_numpy()
    if len(set(batches)) < 2:
        raise HarmonizationError("ComBat needs at least two centers in the training set")
    with contextlib.redirect_stdout(io.StringIO()):
        result = neuroCombat(dat=features.to_numpy(float).T, covars=pd.DataFrame({"center": batches}),
                             batch_col="center")
    estimates = result["estimates"]
    levels = [str(level) for level in estimates["batches"]]
    return {
        "method": "ComBat (neuroCombat, parametric empirical Bayes, no covariates)",
        "features": list(features.columns),
        "centers": levels,
        "mean": np.asarray(estimates["stand.mean"])[:, 0].tolist(),
        "sd": np.sqrt(np.asarray(estimates["var.pooled"])[:, 0]).tolist(),
        "gamma": {level: np.asarray(estimates["gamma.star"])[i].tolist() for i, level in enumerate(levels)},
        "delta": {level: np.asarray(estimates["delta.star"])[i].tolist() for i, level in enumerate(levels)},
    }


def apply_combat(features: pd.DataFrame, centers: pd.Series, params: dict[str, Any]) -> pd.DataFrame:
    """Harmonize ``features`` with fitted parameters; a center unseen in training is an error."""
    unknown = sorted(set(centers.astype(str)) - set(params["centers"]))
    if unknown:
        raise HarmonizationError(
            f"no ComBat parameters for center(s) {unknown}: ComBat can only harmonize centers present in the "
            f"training set ({params['centers']}); use a random split or set harmonize: false"
        )
    columns = params["features"]
    values = features[columns].to_numpy(float)
    mean, sd = np.asarray(params["mean"]), np.asarray(params["sd"])
    out = np.empty_like(values)
    for row, center in enumerate(centers.astype(str)):
        gamma, delta = np.asarray(params["gamma"][center]), np.asarray(params["delta"][center])
        out[row] = ((values[row] - mean) / sd - gamma) / np.sqrt(delta) * sd + mean
    return pd.DataFrame(out, index=features.index, columns=columns)
