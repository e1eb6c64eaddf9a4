"""Cost of the internal validation (bootstrap optimism) on a feature table of the paper's size.

A synthetic table of 422 patients (the paper's cohort; 70% training) with 2 x 1130 radiomics features, the
morphological factors and the four clinical factors, with a known outcome model, is fitted with all four models;
then a few bootstrap resamples of each model's whole pipeline are timed, and the time of 200 resamples on the
machine's cores is extrapolated.

    python bench/internal_validation_bench.py [--resamples 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd


def paper_sized_table(seed: int = 1, n: int = 422) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = [f"{region}_original_firstorder_f{k}" for region in ("Tumor", "Rliver") for k in range(1130)]
    latent = rng.normal(size=(n, 40))
    loadings = rng.normal(size=(40, len(names))) * 0.6
    features = pd.DataFrame(latent @ loadings + rng.normal(size=(n, len(names))), columns=names)
    features["Tumor_volume_mL"] = np.exp(rng.normal(3.5, 1.0, n))
    features["Rliver_volume_mL"] = rng.normal(1500, 250, n)
    afp = np.round(10 ** rng.normal(1.8, 1.2, n), 1)
    child_pugh = rng.choice(["A", "B"], n, p=[0.8, 0.2])
    bclc = rng.choice(["A", "B", "C"], n, p=[0.3, 0.5, 0.2])
    treatment = rng.choice(["TACE", "TACE+systemic"], n, p=[0.7, 0.3])
    tumor, liver = features[names[0]], features[names[1500]]
    lp = (0.5 * (afp >= 400) + 0.4 * (child_pugh == "B") + 0.3 * (bclc == "C")
          + 0.5 * tumor / tumor.std() - 0.4 * liver / liver.std())
    true_time = rng.exponential(12 * np.exp(-lp))
    censor = rng.uniform(3, 36, n)
    table = features.assign(afp=afp, child_pugh=child_pugh, bclc=bclc, treatment=treatment,
                            center=rng.choice(list("ABCDEF"), n), pfs_months=np.minimum(true_time, censor),
                            pfs_event=(true_time <= censor).astype(int))
    table["dataset"] = np.where(rng.random(n) < 0.7, "training", "validation")
    table.index = pd.Index([f"P{k:03d}" for k in range(n)], name="patient_id")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2, help="timed resamples per model")
    args = parser.parse_args()
    from hccrad.evaluate.internal import _one_resample
    from hccrad.survival import ModelConfig, fit_models

    table = paper_sized_table()
    training = table[table["dataset"] == "training"]
    start = time.perf_counter()
    fitted = fit_models(table, ModelConfig())
    fit_seconds = time.perf_counter() - start
    print(f"table: {len(table)} patients ({len(training)} training), {table.shape[1]} columns; "
          f"one fit of the four models: {fit_seconds:.1f} s")
    per_resample = 0.0
    for name, model in fitted.models.items():
        cpu, wall = time.process_time(), time.perf_counter()
        for b in range(args.resamples):
            _one_resample(model, training, (6.0, 12.0), 1000 + b)
        seconds = (time.perf_counter() - wall) / args.resamples
        per_resample += seconds
        print(f"  {name:6} {seconds:6.1f} s per resample (CPU {(time.process_time() - cpu) / args.resamples:.1f} s)")
    cores = os.cpu_count() or 1
    print(f"all four models: {per_resample:.1f} s per resample; 200 resamples on {cores} cores: "
          f"{200 * per_resample / cores / 60:.0f} minutes (target: at most 20)")


if __name__ == "__main__":
    main()
