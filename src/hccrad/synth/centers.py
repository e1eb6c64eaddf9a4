"""Scanner profiles of the synthetic centers, in the spirit of the paper's Supplementary Table 1.

The centers are fictional (A-F); each borrows the acquisition settings of one hospital of the paper's
table: slice thickness 2 or 5 mm, field of view, pixel matrix, sharp or standard kernel, tube current.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScannerProfile:
    """How one center acquires and reconstructs its venous-phase CT."""

    center: str
    manufacturer: str
    model: str
    kvp: float
    tube_current_ma: float
    rotation_time_s: float
    n_detector_rows: int
    detector_width_mm: float
    fov_mm: float
    matrix: int
    kernel: str
    sharp_kernel: bool
    slice_thickness_mm: float
    file_format: str  # "nifti" or "dicom"
    contrast_shift_hu: float  # center-level enhancement difference (injection protocol, timing)

    def scaled_matrix(self, full_resolution: bool) -> int:
        """Pixel matrix of the written image: the real one, or a quarter of it (at most 128) for the fast demo."""
        return self.matrix if full_resolution else max(64, min(128, self.matrix // 4))

    def pixel_spacing_mm(self, full_resolution: bool) -> float:
        """In-plane pixel spacing (mm) of this center's CTs."""
        return self.fov_mm / self.scaled_matrix(full_resolution)

    def noise_sd_hu(self) -> float:
        """Image noise, growing as 1/sqrt(mAs) and with a sharp kernel (reference: 12 HU at 250 mAs·0.5 s)."""
        mas = self.tube_current_ma * self.rotation_time_s
        kernel_factor = 1.45 if self.sharp_kernel else 1.0
        return 12.0 * (125.0 / mas) ** 0.5 * kernel_factor


#: Default centers of the demo cohort; the last three are the validation centers of the demo study.
DEFAULT_CENTERS: tuple[ScannerProfile, ...] = (
    ScannerProfile("A", "Philips", "Brilliance iCT", 120, 142, 0.75, 128, 0.625, 300, 512, "C", True, 5.0,
                   "nifti", 0.0),
    ScannerProfile("B", "Philips", "Brilliance 64", 120, 250, 0.50, 64, 0.625, 500, 1024, "C", True, 5.0,
                   "dicom", 6.0),
    ScannerProfile("C", "Philips", "Brilliance iCT", 120, 250, 0.50, 128, 0.625, 350, 512, "B", False, 5.0,
                   "nifti", -5.0),
    ScannerProfile("D", "Philips", "Brilliance 64", 120, 300, 0.75, 64, 0.625, 350, 512, "C", True, 2.0,
                   "nifti", 4.0),
    ScannerProfile("E", "Philips", "Brilliance iCT", 120, 250, 0.50, 128, 0.625, 350, 512, "B", False, 5.0,
                   "dicom", -3.0),
    ScannerProfile("F", "SIEMENS", "SOMATOM Definition Flash", 120, 160, 0.50, 64, 0.625, 350, 512, "B60f",
                   True, 2.0, "dicom", 8.0),
)

#: Share of the cohort per center (the training centers hold about two thirds of the patients).
DEFAULT_CENTER_WEIGHTS = {"A": 0.30, "B": 0.18, "C": 0.17, "D": 0.12, "E": 0.12, "F": 0.11}
DEFAULT_VALIDATION_CENTERS = ("D", "E", "F")


def profile_for(center: str) -> ScannerProfile:
    """The scanner profile of a synthetic center (``A`` ... ``F``)."""
    for profile in DEFAULT_CENTERS:
        if profile.center == center:
            return profile
    raise KeyError(f"unknown synthetic center {center!r}")
