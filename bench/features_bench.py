"""Per-region seconds and peak memory of the features stage on a paper-sized case.

A synthetic patient is rendered on a 512 x 512 x 150 grid (0.684 x 0.684 x 1.5 mm, liver about 1.5 L) and
each region goes through PyRadiomics in a fresh process, so that the peak resident memory is the region's
own. hccrad's configuration (crop with the sigma-derived pad) runs beside PyRadiomics' plain behaviour on
the same case (`--reference`: no pre-crop; with resampling PyRadiomics crops to the mask during resampling
anyway, so the reference is also run on the native grid, where pre-cropping matters most).

    python bench/features_bench.py [--params paper|demo] [--reference] [--regions Tumor Rliver]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def make_case(folder: Path) -> tuple[Path, Path]:
    from hccrad.synth.anatomy import Grid, acquire, render_case
    from hccrad.synth.patients import draw_patient
    from hccrad.synth.writers import to_sitk

    grid = Grid(shape=(150, 512, 512), spacing=(1.5, 350 / 512, 350 / 512), origin=(-175.0, -170.0, -110.0))
    patient = draw_patient("BENCH", "D", 12345, 0.0)
    rendered = render_case(patient.anatomy, grid)
    ct = acquire(rendered, 1.0, 14.0, 1.5, 1)
    sitk.WriteImage(to_sitk(ct, grid), str(folder / "ct.nii.gz"))
    sitk.WriteImage(to_sitk(rendered.labels, grid), str(folder / "mask.nii.gz"))
    return folder / "ct.nii.gz", folder / "mask.nii.gz"


def _region_worker(ct: str, mask: str, region: str, params: dict, pad: int, out) -> None:
    import threading

    import psutil

    from hccrad.features.extract import radiomics_extractor, radiomics_features
    from hccrad.features.regions import remnant_liver_mask, tumor_mask
    from hccrad.io.images import read_image, read_mask

    image = sitk.Cast(read_image(ct), sitk.sitkFloat32)
    labels = sitk.GetArrayFromImage(read_mask(mask, image))
    region_mask = tumor_mask(labels) if region == "Tumor" else remnant_liver_mask(labels)
    del labels
    extractor = radiomics_extractor(params, pad)
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    running = [True]

    def sample() -> None:  # the peak of this process's resident memory while PyRadiomics runs
        while running[0]:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    features = radiomics_features(extractor, image, region_mask, region)
    seconds = time.perf_counter() - start
    running[0] = False
    sampler.join()
    out.put({"seconds": seconds, "n_features": len(features), "voxels": int(region_mask.sum()),
             "input_mb": baseline / 2**20, "peak_rss_mb": peak[0] / 2**20,
             "extraction_mb": (peak[0] - baseline) / 2**20})


def measure(ct: Path, mask: Path, region: str, params: dict, pad: int) -> dict:
    queue: mp.Queue = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(target=_region_worker, args=(str(ct), str(mask), region, params,
                                                                           pad, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    from hccrad.features.config import FeatureConfig, crop_pad_voxels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="paper")
    parser.add_argument("--reference", action="store_true", help="also run PyRadiomics without pre-cropping")
    parser.add_argument("--regions", nargs="+", default=["Tumor", "Rliver"])
    args = parser.parse_args()
    config = FeatureConfig(params=args.params)
    params = config.radiomics_params()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        ct, mask = make_case(Path(folder))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
        voxel_ml = 0.684 * 0.684 * 1.5 / 1000
        print(f"case: 512 x 512 x 150, liver {np.isin(labels, (1, 2)).sum() * voxel_ml:.0f} mL, "
              f"tumor {(labels == 2).sum() * voxel_ml:.0f} mL (made in {time.perf_counter() - start:.0f} s)")
        pad = crop_pad_voxels(params, (1.5, 0.684, 0.684), config.pad_sigmas)
        rows = []
        for region in args.regions:
            result = measure(ct, mask, region, params, pad)
            rows.append({"region": region, "setting": f"hccrad ({args.params}, pad {pad})", **result})
            print(json.dumps(rows[-1]))
            if args.reference:
                native = {**params, "setting": {**params["setting"], "preCrop": False}}
                native["setting"].pop("resampledPixelSpacing", None)
                ours = {**params, "setting": {**params["setting"]}}
                ours["setting"].pop("resampledPixelSpacing", None)
                for label, setting in (("hccrad native grid", ours), ("PyRadiomics native, no pre-crop", native)):
                    result = measure(ct, mask, region, setting, pad)
                    rows.append({"region": region, "setting": label, **result})
                    print(json.dumps(rows[-1]))
        print(f"{'region':8} {'setting':36} {'voxels':>10} {'seconds':>9} {'input MB':>9} {'peak MB':>9} "
              f"{'+MB':>7}")
        for row in rows:
            print(f"{row['region']:8} {row['setting']:36} {row['voxels']:>10} {row['seconds']:>9.1f} "
                  f"{row['input_mb']:>9.0f} {row['peak_rss_mb']:>9.0f} {row['extraction_mb']:>7.0f}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
