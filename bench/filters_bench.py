"""The engine's compiled LoG, gradient and resampling beside SimpleITK's, on a remnant-liver-sized crop.

SimpleITK runs single-threaded here (``SetGlobalDefaultNumberOfThreads(1)``) so that both sides are timed as one
core's CPU seconds, the unit of the features bench; each timing is the best of ``--repeats``. Equality is counted
voxel for voxel on the same inputs.

    python bench/filters_bench.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import SimpleITK as sitk

from hccrad.features.engine import filters

#: A remnant liver's crop after resampling to 0.647 x 0.647 x 1.5 mm with the paper's 26-voxel pad (z, y, x).
CROP = (145, 360, 330)
#: The CT region the resampled crop reads, at 0.684 x 0.684 x 1.5 mm, plus the 24-voxel B-spline margin.
SUPPORT = (150, 388, 360)


def best_cpu(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = function()
        best = min(best, time.process_time() - start)
    return best, result


def textured(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """CT-like float32 values: a smooth field of tissue contrast plus noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=tuple(max(2, n // 8) for n in shape))
    smooth = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse.shape, strict=True)], order=1)
    return (100 + 60 * smooth + 14 * rng.normal(size=shape)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    # compile once so that no timing includes numba's compilation
    small = textured((8, 8, 8), 0)
    filters.laplacian_of_gaussian(small, (1.5, 0.647, 0.647), 1.0)

    crop = textured(CROP, 1)
    image = sitk.GetImageFromArray(crop)
    image.SetSpacing((0.647, 0.647, 1.5))
    print(f"LoG on a {CROP[2]} x {CROP[1]} x {CROP[0]} crop (x y z), float32")
    print(f"{'sigma mm':>8} {'SimpleITK CPU s':>16} {'engine CPU s':>13} {'ratio':>6} {'voxels differing':>17}")
    for sigma in (1.0, 3.0):
        log = sitk.LaplacianRecursiveGaussianImageFilter()
        log.SetNormalizeAcrossScale(True)
        log.SetSigma(sigma)
        itk_s, expected = best_cpu(lambda log=log: sitk.GetArrayFromImage(log.Execute(image)), args.repeats)
        ours_s, ours = best_cpu(lambda sigma=sigma: filters.laplacian_of_gaussian(crop, (1.5, 0.647, 0.647), sigma),
                                args.repeats)
        print(f"{sigma:>8} {itk_s:>16.2f} {ours_s:>13.2f} {itk_s / ours_s:>6.1f} {int(np.sum(ours != expected)):>17}")

    gradient = sitk.GradientMagnitudeImageFilter()
    gradient.SetUseImageSpacing(True)
    itk_s, expected = best_cpu(lambda: sitk.GetArrayFromImage(gradient.Execute(image)), args.repeats)
    ours_s, ours = best_cpu(lambda: filters.gradient_magnitude(crop, (1.5, 0.647, 0.647)), args.repeats)
    print(f"\nGradient magnitude on the same crop: SimpleITK {itk_s:.2f} s, engine {ours_s:.2f} s, ratio "
          f"{itk_s / ours_s:.1f}, {int(np.sum(ours != expected))} voxels differing")

    support = textured(SUPPORT, 2)
    source = sitk.GetImageFromArray(support)
    source.SetSpacing((0.684, 0.684, 1.5))
    mask_array = (support > 100).astype(np.uint8)
    mask = sitk.GetImageFromArray(mask_array)
    mask.CopyInformation(source)
    target = np.array([0.647, 0.647, 1.5])
    origin = source.TransformContinuousIndexToPhysicalPoint(
        (0.5 * (target - 0.684) / 0.684 + 24 * 0.647 / 0.684).tolist()[:2] + [0.0])
    size = [CROP[2], CROP[1], CROP[0]]

    def itk(moving: sitk.Image, interpolator: int, pixel: int) -> np.ndarray:
        resampler = sitk.ResampleImageFilter()
        resampler.SetOutputSpacing(target.tolist())
        resampler.SetOutputDirection(source.GetDirection())
        resampler.SetSize(size)
        resampler.SetOutputOrigin(origin)
        resampler.SetOutputPixelType(pixel)
        resampler.SetInterpolator(interpolator)
        return sitk.GetArrayFromImage(resampler.Execute(moving))

    geometry = {"origin": np.array(source.GetOrigin()), "spacing": np.array(source.GetSpacing()),
                "direction": np.eye(3)}
    output = {"origin": np.array(origin), "spacing": target, "direction": np.eye(3), "size": size}
    positions = filters.axis_aligned_positions(geometry, output)
    print(f"\nResampling a {SUPPORT[2]} x {SUPPORT[1]} x {SUPPORT[0]} CT region at 0.684 mm onto the crop at 0.647 mm")
    print(f"{'':>22} {'SimpleITK CPU s':>16} {'engine CPU s':>13} {'ratio':>6} {'voxels differing':>17}")
    for name, run_itk, run_ours in (
            ("image (cubic B-spline)", lambda: itk(source, sitk.sitkBSpline, sitk.sitkFloat32),
             lambda: filters.resample_cubic(support, positions)),
            ("mask (nearest)", lambda: itk(mask, sitk.sitkNearestNeighbor, sitk.sitkUInt8),
             lambda: filters.resample_nearest(mask_array, positions))):
        itk_s, expected = best_cpu(run_itk, args.repeats)
        ours_s, ours = best_cpu(run_ours, args.repeats)
        differing = int(np.sum(ours != expected))
        largest = float(np.max(np.abs(ours.astype(np.float64) - expected))) if differing else 0.0
        print(f"{name:>22} {itk_s:>16.2f} {ours_s:>13.2f} {itk_s / ours_s:>6.1f} {differing:>17}"
              + (f"  (largest difference {largest:.2g})" if differing else ""))


if __name__ == "__main__":
    main()
