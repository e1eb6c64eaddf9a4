"""One style for every output: a colour per model and per structure, defined once and used by the report's
figures, the paper folder, the QC gallery and the web app's viewer."""

from __future__ import annotations

#: Okabe & Ito's colour-blind-safe palette.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
#: The models' colours, in every figure (report, paper folder, web app): C orange, T blue, T&L vermilion, C-T&L
#: bluish green.
MODEL_COLORS = {"C": OKABE_ITO[4], "T": OKABE_ITO[0], "T&L": OKABE_ITO[1], "C-T&L": OKABE_ITO[2]}
#: The structures' contour colours, in the QC gallery and the web app's viewer (and its colour key).
STRUCTURE_RGB = {"liver": (0, 200, 80), "tumor": (230, 40, 40), "portal_vein": (60, 120, 255)}
STRUCTURE_COLORS = {name: "#{:02X}{:02X}{:02X}".format(*rgb) for name, rgb in STRUCTURE_RGB.items()}
