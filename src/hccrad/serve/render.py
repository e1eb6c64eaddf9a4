"""What the web app draws: CT slices with contours (PNG), the PFS curve with its band, the patient's place in the
training risk distribution and the covariate contributions (inline SVG, text kept as text)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

#: Abdominal soft-tissue window (level 40 HU, width 400 HU).
WINDOW_HU = (-160.0, 240.0)
#: Contour colours (RGB) of the liver, tumor and portal-vein labels.
CONTOUR_COLORS = {1: (0, 200, 80), 2: (230, 40, 40), 3: (60, 120, 255)}
MAX_VIEW_PIXELS = 512


@dataclass
class SliceStack:
    """The CT and its labels kept for the viewer: axial slices (z, y, x), HU as int16, labels as uint8, and the
    in-plane aspect ratio (row spacing over column spacing)."""
    hu: np.ndarray
    labels: np.ndarray
    aspect: float

    @classmethod
    def from_images(cls, ct: sitk.Image, labels: sitk.Image | None) -> SliceStack:
        hu = sitk.GetArrayFromImage(ct)
        hu = np.clip(hu, -1024, 3071).astype(np.int16)
        mask = (sitk.GetArrayFromImage(labels).astype(np.uint8) if labels is not None
                else np.zeros(hu.shape, np.uint8))
        step = max(1, int(np.ceil(max(hu.shape[1:]) / MAX_VIEW_PIXELS)))
        spacing = ct.GetSpacing()
        return cls(hu[:, ::step, ::step], mask[:, ::step, ::step], spacing[1] / spacing[0])

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])

    def tumor_center_slice(self) -> int:
        """The slice through the tumor's center (else the liver's, else the middle)."""
        for label in (2, 1):
            z = np.nonzero(self.labels == label)[0]
            if z.size:
                return int(np.round(z.mean()))
        return self.n_slices // 2


def _edges(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def slice_png(stack: SliceStack, index: int) -> bytes:
    """Axial slice ``index`` in the abdominal window with the label contours, as PNG bytes."""
    from PIL import Image

    index = int(np.clip(index, 0, stack.n_slices - 1))
    low, high = WINDOW_HU
    gray = np.clip((stack.hu[index].astype(float) - low) / (high - low), 0, 1)
    rgb = np.repeat((gray * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    for label, color in CONTOUR_COLORS.items():
        rgb[_edges(stack.labels[index] == label)] = color
    image = Image.fromarray(rgb)
    if abs(stack.aspect - 1) > 0.01:
        image = image.resize((image.width, int(round(image.height * stack.aspect))))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _svg(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _axes(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    return plt.subplots(figsize=(width, height))


def pfs_curve_svg(curves: dict[str, object], horizons: list[float]) -> str:
    """Each model's predicted PFS curve (pandas frames: time_months, pfs, ci_low, ci_high) with its 95% band."""
    figure, axis = _axes(5.2, 3.2)
    for name, curve in curves.items():
        line = axis.step(curve["time_months"], curve["pfs"], where="post", label=name)[0]
        axis.fill_between(curve["time_months"], curve["ci_low"], curve["ci_high"], step="post", alpha=0.15,
                          color=line.get_color())
    for horizon in horizons:
        axis.axvline(horizon, color="grey", linewidth=0.6, linestyle=":")
    axis.set_ylim(0, 1)
    axis.set_xlabel("months from treatment")
    axis.set_ylabel("predicted progression-free survival")
    axis.legend(fontsize=7, frameon=False)
    return _svg(figure)


def risk_distribution_svg(percentiles: np.ndarray, score: float, cutoff: float, model: str) -> str:
    """The training patients' risk scores (from their stored percentiles) with this patient's score and the
    cut-off marked."""
    figure, axis = _axes(5.2, 1.6)
    percentiles = np.asarray(percentiles, float)
    axis.plot(percentiles, np.arange(101), color="#555")
    axis.axvline(cutoff, color="#999", linestyle="--", linewidth=0.8, label=f"cut-off {cutoff:.3f}")
    position = float(np.interp(score, percentiles, np.arange(101.0), left=0.0, right=100.0))
    axis.plot([score], [position], "o", color="#d62728", label=f"this patient ({position:.0f}th percentile)")
    axis.set_xlabel(f"{model} risk score")
    axis.set_ylabel("training %")
    axis.legend(fontsize=7, frameon=False, loc="lower right")
    return _svg(figure)


def contributions_svg(contributions, model: str) -> str:
    """Horizontal bars of each covariate's contribution (coef x (value - training mean)), largest first."""
    ordered = contributions.reindex(contributions["contribution"].abs().sort_values().index)
    figure, axis = _axes(5.2, 0.28 * len(ordered) + 0.9)
    colors = ["#d62728" if value > 0 else "#1f77b4" for value in ordered["contribution"]]
    axis.barh(ordered["covariate"], ordered["contribution"], color=colors)
    axis.axvline(0, color="black", linewidth=0.6)
    axis.set_xlabel(f"contribution to the {model} risk score (red: higher risk than the average training patient)")
    axis.tick_params(axis="y", labelsize=7)
    return _svg(figure)
