"""What the web app draws: CT slices with contours (PNG), the PFS curve with its band, the patient's place in the
training risk distribution and the covariate contributions (inline SVG, text kept as text)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from hccrad.evaluate.style import STRUCTURE_RGB

#: Abdominal soft-tissue window (level 40 HU, width 400 HU).
WINDOW_HU = (-160.0, 240.0)
#: Contour colours (RGB) of the liver, tumor and portal-vein labels.
CONTOUR_COLORS = {1: STRUCTURE_RGB["liver"], 2: STRUCTURE_RGB["tumor"], 3: STRUCTURE_RGB["portal_vein"]}
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


def pfs_curve_svg(curves: dict[str, object], horizons: list[float], primary: str | None = None) -> str:
    """Each model's predicted PFS curve (pandas frames: time_months, pfs, ci_low, ci_high) with its 95% band, in
    percent; the primary model drawn thicker; the horizons marked and labelled."""
    from matplotlib.ticker import PercentFormatter

    figure, axis = _axes(6.0, 3.6)
    for name, curve in curves.items():
        main = name == primary
        line = axis.step(curve["time_months"], curve["pfs"], where="post", linewidth=2.4 if main else 1.2,
                         label=f"{name} (primary)" if main else name)[0]
        axis.fill_between(curve["time_months"], curve["ci_low"], curve["ci_high"], step="post",
                          alpha=0.18 if main else 0.08, color=line.get_color())
    for horizon in horizons:
        axis.axvline(horizon, color="grey", linewidth=0.8, linestyle=":")
        axis.text(horizon, 1.01, f"{horizon:g} months", ha="center", va="bottom", fontsize=9, color="#444",
                  transform=axis.get_xaxis_transform())
    axis.set_ylim(0, 1)
    axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    axis.set_xlabel("months from treatment", fontsize=10)
    axis.set_ylabel("predicted progression-free survival", fontsize=10)
    axis.legend(fontsize=9, frameon=False, title="model (shaded: 95% interval)", title_fontsize=9)
    return _svg(figure)


def risk_distribution_svg(percentiles: np.ndarray, score: float, cutoff: float, model: str) -> str:
    """The training patients' risk scores (from their stored percentiles) with this patient's score and the
    cut-off marked."""
    figure, axis = _axes(5.6, 1.9)
    percentiles = np.asarray(percentiles, float)
    axis.plot(percentiles, np.arange(101), color="#555")
    axis.axvline(cutoff, color="#999", linestyle="--", linewidth=0.8, label=f"cut-off {cutoff:.2f}")
    position = float(np.interp(score, percentiles, np.arange(101.0), left=0.0, right=100.0))
    axis.plot([score], [position], "o", color="#d62728", label=f"this patient ({position:.0f}th percentile)")
    axis.set_xlabel(f"{model} risk score", fontsize=9)
    axis.set_ylabel("% of training\npatients below", fontsize=9)
    axis.legend(fontsize=8, frameon=False, loc="lower right")
    return _svg(figure)


def _wrapped(label: str, width: int = 34) -> str:
    """A long factor name over lines of at most ``width`` characters, broken at underscores or spaces."""
    import re

    pieces = re.split(r"(?<=[_ ])", label)
    lines, current = [], ""
    for piece in pieces:
        if current and len(current) + len(piece) > width:
            lines.append(current)
            current = ""
        current += piece
    return "\n".join([*lines, current])


def contributions_svg(lines, model: str) -> str:
    """The contributions (:func:`hccrad.serve.present.contribution_lines`) as horizontal bars grouped clinical /
    tumor / liver: red raises the risk, blue lowers it, a reference category is a grey mark at the baseline."""
    from hccrad.serve.present import GROUP_TITLES

    labels, values, colors, references, separators = [], [], [], [], []
    group = None
    for line in lines:
        if line.group != group:
            if group is not None:
                separators.append(len(labels) - 0.5)
            group = line.group
        labels.append(_wrapped(f"{GROUP_TITLES.get(line.group, line.group)}: {line.label}"
                               if line.group == "clinical" else line.label) + f"\n({line.value})")
        values.append(0.0 if line.reference else line.contribution)
        colors.append("#d62728" if line.contribution > 0 else "#1f77b4")
        references.append(line.reference)
    height = sum(label.count("\n") + 1 for label in labels) * 0.19 + 1.1
    figure, axis = _axes(6.4, height)
    positions = np.arange(len(labels))[::-1]
    axis.barh(positions, values, color=colors, height=0.6)
    for position, is_reference in zip(positions, references, strict=True):
        if is_reference:
            axis.plot([0], [position], marker="D", color="#888", markersize=6)
            axis.annotate("reference (baseline)", (0, position), xytext=(8, 0), textcoords="offset points",
                          va="center", fontsize=8, color="#555")
    for separator in separators:
        axis.axhline(len(labels) - 1 - separator, color="#ccc", linewidth=0.8)
    axis.set_yticks(positions, labels, fontsize=8)
    axis.axvline(0, color="black", linewidth=0.6)
    axis.set_xlabel(f"part of the {model} risk score (red raises the risk, blue lowers it)", fontsize=9)
    return _svg(figure)
