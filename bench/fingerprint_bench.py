"""The cost of a case's content fingerprint (:func:`hccrad.features.extract.case_fingerprint`) on a paper-sized CT.

The features stage hashes every byte of a case's CT and mask (a NIfTI file, or each file of a DICOM folder) on
every run, so that a CT replaced by another one with the same names, sizes and modification times is computed
again. This bench renders one paper-sized case (512 x 512 x 150 at 0.684 x 0.684 x 1.5 mm), writes its CT as
NIfTI (gzip) and as a 150-file DICOM series, and prints, for each, the CPU and wall seconds of the whole
fingerprint (mask included) beside the names-sizes-mtimes key the stage used before, from the same run. The
file cache is warm (a second run's situation); ``--cold`` asks the kernel to drop the files' pages first.

    python bench/fingerprint_bench.py [--repeats 5] [--cold]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def stat_key(path: Path) -> str:
    """The old key: file names, sizes and modification times only."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def drop_cache(path: Path) -> None:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def timed(function, repeats: int, before=None) -> tuple[float, float]:
    """Median CPU and wall seconds of ``function()`` over ``repeats`` calls."""
    cpus, walls = [], []
    for _ in range(repeats):
        if before:
            before()
        cpu, wall = time.process_time(), time.perf_counter()
        function()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return sorted(cpus)[len(cpus) // 2], sorted(walls)[len(walls) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="drop the files from the page cache before each call")
    args = parser.parse_args()

    import SimpleITK as sitk
    from features_bench import make_case, paper_sized_seeds

    from hccrad.features.config import FeatureConfig
    from hccrad.features.extract import case_fingerprint, engine_version
    from hccrad.synth.anatomy import Grid
    from hccrad.synth.centers import profile_for
    from hccrad.synth.writers import write_dicom_series

    config = FeatureConfig()
    params, settings, version = config.radiomics_params(), config.model_dump(mode="json"), engine_version("hccrad")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        ct_nifti, mask = make_case(folder, paper_sized_seeds(1)[0])
        image = sitk.ReadImage(str(ct_nifti))
        grid = Grid(shape=image.GetSize()[::-1], spacing=image.GetSpacing()[::-1], origin=image.GetOrigin()[::-1])
        ct_dicom = folder / "dicom"
        write_dicom_series(sitk.GetArrayFromImage(image).astype("int16"), grid, ct_dicom, profile_for("D"), "BENCH")
        print(f"paper-sized CT {image.GetSize()} at {tuple(round(s, 3) for s in image.GetSpacing())} mm; "
              f"mask {mask.stat().st_size / 1e6:.1f} MB; cache {'cold' if args.cold else 'warm'}; "
              f"median of {args.repeats}")
        print(f"{'CT as':<22}{'MB':>8}{'files':>7}{'content CPU s':>15}{'wall s':>9}{'stat-only CPU s':>17}"
              f"{'wall s':>9}")
        for label, ct in (("NIfTI (.nii.gz)", ct_nifti), ("DICOM series", ct_dicom)):
            files = sorted(ct.iterdir()) if ct.is_dir() else [ct]
            size = sum(f.stat().st_size for f in files) / 1e6

            def before(ct=ct):
                if args.cold:
                    drop_cache(ct)
                    drop_cache(mask)

            content = timed(lambda ct=ct: case_fingerprint(ct, mask, None, params, settings, version), args.repeats,
                            before)
            stat_only = timed(lambda ct=ct: stat_key(ct), args.repeats, before)
            print(f"{label:<22}{size:>8.1f}{len(files):>7}{content[0]:>15.3f}{content[1]:>9.3f}"
                  f"{stat_only[0]:>17.4f}{stat_only[1]:>9.4f}")


if __name__ == "__main__":
    main()
