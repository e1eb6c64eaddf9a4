"""The training / validation split, and the center names it relies on (one spelling per center)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hccrad.io.config import StudyConfig
from hccrad.io.issues import ValidationIssue

if TYPE_CHECKING:
    from hccrad.io.manifest import PatientRecord


def center_key(name: str) -> str:
    """How center names are compared: spaces collapsed and case folded (``'Center  d'`` and ``'center D'``)."""
    return " ".join(name.split()).casefold()


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:8]))
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}" + (f" and {len(rows) - 8} more" if len(rows) > 8
                                                                    else "")


def center_spelling_issues(patients: list[PatientRecord]) -> list[ValidationIssue]:
    """An error for each row whose center is another spelling of a center (:func:`center_key`): ``d`` beside
    ``D`` would be a separate center, and could put a validation patient in the training set. The most frequent
    spelling keeps its rows; the others are left out, with the remedy (one spelling, or ``value_maps``)."""
    spellings: dict[str, dict[str, list[PatientRecord]]] = {}
    for record in patients:
        spellings.setdefault(center_key(record.center), {}).setdefault(record.center, []).append(record)
    issues = []
    for variants in spellings.values():
        if len(variants) < 2:
            continue
        ranked = sorted(variants, key=lambda name: (-len(variants[name]), name))
        kept = ranked[0]
        listing = "; ".join(f"{name!r} on {_rows_text(sorted(r.row for r in variants[name]))}" for name in ranked)
        for name in ranked[1:]:
            for record in variants[name]:
                issues.append(ValidationIssue(
                    record.row, record.patient_id, "center",
                    f"center {name!r} is another spelling of {kept!r} (centers are compared without case and "
                    f"extra spaces: {listing}); the row is left out: write {kept!r}, or map it in the manifest "
                    f"with value_maps: {{center: {{{name!r}: {kept!r}}}}}"))
    return issues


def _split_center_issues(named: list[str], centers: set[str], field: str) -> list[ValidationIssue]:
    """Issues for centers named in the split: one with no patient, or one that matches only without case."""
    by_key = {center_key(center): center for center in centers}
    issues = []
    for name in named:
        if name in centers:
            continue
        match = by_key.get(center_key(name))
        hint = (f"; the table spells it {match!r}: write that in the manifest" if match is not None
                else f"; the table's centers are {', '.join(sorted(centers))}")
        issues.append(ValidationIssue(None, None, "split", f"{field} center {name!r} has no patient{hint}"))
    return issues


def assign_split(patients: list[PatientRecord], config: StudyConfig) -> list[ValidationIssue]:
    """Set each patient's ``dataset`` to training or validation, by center or seeded stratified draw.

    With ``external: true`` every patient is a validation patient of saved models (no training set). By centers,
    a center not named in ``validation_centers`` is a training center, unless ``training_centers``
    is given too: then a center in neither list is an error for each of its rows (left out), since the split
    does not say where it belongs.
    """
    split = config.split
    issues: list[ValidationIssue] = []
    if split.external:  # an external cohort: no model is fitted on it (``hccrad external-validate``)
        for record in patients:
            record.dataset = "validation"
        return issues
    if split.validation_centers:
        centers = {record.center for record in patients}
        issues += _split_center_issues(split.validation_centers, centers, "validation")
        if split.training_centers is not None:
            issues += _split_center_issues(split.training_centers, centers, "training")
            known = set(split.training_centers) | set(split.validation_centers)
            for record in patients:
                if record.center not in known:
                    issues.append(ValidationIssue(
                        record.row, record.patient_id, "center",
                        f"center {record.center!r} is in neither split.training_centers nor "
                        "split.validation_centers; add it to one of them (the row is left out)"))
        for record in patients:
            record.dataset = "validation" if record.center in split.validation_centers else "training"
        return issues
    rng = np.random.default_rng(split.seed)
    strata: dict[tuple[str, int], list[PatientRecord]] = {}
    for record in sorted(patients, key=lambda r: r.patient_id):
        strata.setdefault((record.center, record.pfs_event), []).append(record)
    keys = sorted(strata)
    # Largest-remainder allocation: each stratum gets its share, the total is round(fraction * n).
    quotas = np.array([split.validation_fraction * len(strata[key]) for key in keys])
    counts = np.floor(quotas).astype(int)
    total = int(np.floor(split.validation_fraction * len(patients) + 0.5))
    remainders = quotas - counts + rng.uniform(0, 1e-6, size=len(keys))
    for index in np.argsort(-remainders)[: max(0, total - counts.sum())]:
        counts[index] += 1
    for key, n_validation in zip(keys, counts, strict=True):
        members = strata[key]
        order = rng.permutation(len(members))
        for rank, index in enumerate(order):
            members[index].dataset = "validation" if rank < n_validation else "training"
    return issues
