"""A model's applicability domain: how far a patient's model inputs lie from the training patients'.

The distance is Mahalanobis' on the model's inputs (its covariates after coding and standardisation),
each column rescaled by its training mean and SD, with the Ledoit-Wolf shrunk training covariance (so that it
exists when the covariates are collinear or outnumber the patients' information). A patient is read against the
training patients' own leave-one-out distances (each training patient's distance from a domain fitted without
it): its percentile among them, and "outside the domain" above the ``threshold_percentile`` (99, default) of
them. A training patient is outside its own domain in about 1% of cases by construction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Default: a patient farther than 99% of the training patients' leave-one-out distances is outside the domain.
DEFAULT_THRESHOLD_PERCENTILE = 99.0


def _shrunk_precision(standardized: np.ndarray) -> np.ndarray:
    from sklearn.covariance import LedoitWolf

    if standardized.shape[1] == 0:
        return np.zeros((0, 0))
    estimate = LedoitWolf(assume_centered=False).fit(standardized)
    return np.linalg.pinv(estimate.covariance_)


def _distances(points: np.ndarray, center: np.ndarray, precision: np.ndarray) -> np.ndarray:
    offset = points - center
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", offset, precision, offset), 0.0))


def fit_domain(design: np.ndarray, threshold_percentile: float = DEFAULT_THRESHOLD_PERCENTILE) -> dict[str, Any]:
    """The applicability domain of training ``design`` (shape (n, p), the model's covariates), as plain data for
    the model artifact: column means and SDs, the shrunk precision matrix of the rescaled columns, the training
    patients' leave-one-out distances at percentiles 0-100, the threshold percentile and its distance."""
    design = np.asarray(design, float)
    mean = design.mean(axis=0)
    sd = design.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)  # a constant column adds nothing
    standardized = (design - mean) / sd
    precision = _shrunk_precision(standardized)
    n = len(standardized)
    loo = np.empty(n)
    for i in range(n):
        rest = np.delete(standardized, i, axis=0)
        loo[i] = _distances(standardized[[i]], rest.mean(axis=0), _shrunk_precision(rest))[0]
    percentiles = np.percentile(loo, np.arange(101))
    return {"method": "Mahalanobis distance, Ledoit-Wolf shrunk covariance, leave-one-out reference",
            "mean": mean.tolist(), "sd": sd.tolist(), "precision": precision.tolist(),
            "loo_distance_percentiles": percentiles.tolist(), "threshold_percentile": float(threshold_percentile),
            "threshold": float(np.percentile(loo, threshold_percentile)),
            "training_share_outside": float(np.mean(loo > np.percentile(loo, threshold_percentile)))}


def domain_distance(domain: dict[str, Any], design: np.ndarray) -> np.ndarray:
    """Each patient's distance (shape (n,)) from the training patients, for ``design`` (shape (n, p)); NaN where
    an input is missing."""
    design = np.atleast_2d(np.asarray(design, float))
    standardized = (design - np.asarray(domain["mean"])) / np.asarray(domain["sd"])
    precision = np.asarray(domain["precision"], float).reshape(design.shape[1], design.shape[1])
    distances = _distances(np.nan_to_num(standardized), np.zeros(design.shape[1]), precision)
    return np.where(np.isnan(standardized).any(axis=1), np.nan, distances)


def domain_percentile(domain: dict[str, Any], distance: np.ndarray | float) -> np.ndarray:
    """The percentile (0-100) of each distance among the training patients' leave-one-out distances."""
    reference = np.asarray(domain["loo_distance_percentiles"], float)
    return np.interp(np.asarray(distance, float), reference, np.arange(101.0), left=0.0, right=100.0)


def outside_domain(domain: dict[str, Any], distance: np.ndarray | float) -> np.ndarray:
    """Whether each distance lies beyond the domain's threshold (False for NaN)."""
    distance = np.asarray(distance, float)
    return np.nan_to_num(distance, nan=-np.inf) > float(domain["threshold"])
