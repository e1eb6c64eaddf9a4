"""Seconds per case and peak memory of nnU-Net inference in the paper's configuration (CPU, and GPU if present).

A model with the paper's plans (spacing 1.5 x 0.647 x 0.647 mm, patch 48 x 192 x 192, batch 2) is trained for a
single iteration on phantoms (inference time does not depend on the weights), then `hccrad segment predict`'s
code segments synthetic CTs of the chosen size. Or pass --model to time a real trained model.

    python bench/segment_bench.py [--cases 2] [--shape 60 256 256] [--spacing 2.5 1.0 1.0] [--mirroring]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import SimpleITK as sitk
import yaml


def write_case(folder: Path, index: int, shape, spacing_zyx) -> None:
    rng = np.random.default_rng(index)
    z, y, x = np.indices(shape)
    center = np.array(shape) / 2
    radii = np.array(shape) * np.array([0.35, 0.3, 0.3])
    labels = (((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
              + ((x - center[2]) / radii[2]) ** 2 < 1).astype(np.uint8)
    labels[((z - center[0]) / (radii[0] / 3)) ** 2 + ((y - center[1]) / (radii[1] / 3)) ** 2
           + ((x - center[2] * 0.8) / (radii[2] / 3)) ** 2 < 1] = 2
    ct = (np.where(labels == 1, 110, np.where(labels == 2, 55, -100)) + rng.normal(0, 12, shape)).astype(np.int16)
    for array, name in ((ct, f"ct{index}.nii.gz"), (labels, f"mask{index}.nii.gz")):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(reversed(spacing_zyx)))
        sitk.WriteImage(image, str(folder / name))


def main() -> None:
    from hccrad.io import load_study
    from hccrad.segment.nnunet import (
        SegmentationConfig,
        best_device,
        plan_and_preprocess,
        predict_cases,
        prepare_dataset,
        train_folds,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=[60, 256, 256])
    parser.add_argument("--spacing", type=float, nargs=3, default=[2.5, 1.0, 1.0])
    parser.add_argument("--mirroring", action="store_true")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root)
        rows = []
        for index in range(args.cases + 5):
            write_case(folder, index, tuple(args.shape), args.spacing)
            rows.append({"patient_id": f"P{index}", "center": "A", "ct": f"ct{index}.nii.gz",
                         "mask": f"mask{index}.nii.gz" if index < 5 else "", "afp": 1, "child_pugh": "A",
                         "bclc": "A", "treatment": "TACE", "pfs_months": 1, "pfs_event": 1})
        pd.DataFrame(rows).to_csv(folder / "clinical.csv", index=False)
        (folder / "study.yaml").write_text(yaml.safe_dump({
            "name": "bench", "clinical_table": "clinical.csv", "split": {"validation_fraction": 0.5},
            "output_dir": "out", "segmentation": {"dataset_id": 599, "use_mirroring": args.mirroring,
                                                  "n_workers": 1, "folds": [0]}}))
        study = load_study(folder / "study.yaml")
        config = SegmentationConfig.model_validate(study.config.segmentation)
        model = args.model
        if model is None:
            prepare_dataset(study, config)
            plan_and_preprocess(study, config)
            start = time.perf_counter()
            model = train_folds(study, config, [0], epochs=1, iterations_per_epoch=1)
            print(f"one training iteration (incl. validation step) on {best_device()}: "
                  f"{time.perf_counter() - start:.0f} s")
        process = psutil.Process()
        peak, running = [process.memory_info().rss], [True]

        def sample() -> None:
            while running[0]:
                peak[0] = max(peak[0], process.memory_info().rss + sum(
                    child.memory_info().rss for child in process.children(recursive=True)))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        written = predict_cases(study, config, model)
        seconds = time.perf_counter() - start
        running[0] = False
        sampler.join()
        gpu = ""
        try:
            import torch

            if torch.cuda.is_available():
                gpu = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        except ImportError:
            pass
        print(f"inference on {best_device()}: {len(written)} cases of {args.shape} voxels at {args.spacing} mm, "
              f"mirroring {args.mirroring}: {seconds / max(1, len(written)):.1f} s per case, "
              f"peak resident memory {peak[0] / 2**30:.2f} GiB (process and workers){gpu}")


if __name__ == "__main__":
    main()
