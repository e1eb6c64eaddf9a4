"""The paper's factor names and hccrad's column names.

hccrad names high-dimensional features ``<Region>_<imagetype>_<class>_<feature>`` in PyRadiomics' own
spelling (``Tumor_wavelet-HHL_glcm_ClusterShade``). The paper prints some classes differently (``glcM``,
``glcml``, ``glrM``, ``gldM``) and its Figure 1 legend files two run-length features under ``gldm``; the
tables below map every factor of Supplementary Table 3 and every code of Supplementary Figure 1 onto the
column hccrad produces.
"""

from __future__ import annotations

#: Supplementary Table 3, as printed -> hccrad column.
PAPER_TABLE3: dict[str, str] = {
    # Clinical factors (columns of the clinical table, coded by the survival stage).
    "AFP level": "afp",
    "Child-Pugh grade": "child_pugh",
    "BCLC stage": "bclc",
    "Treatment style": "treatment",
    # Tumor.
    "Median CT attenuation of the tumor": "Tumor_HU_median",
    "Tumor_original_glcM_MaximumProbability": "Tumor_original_glcm_MaximumProbability",
    "Tumor_wavelet-HHL_glrM_ShortRunHighGrayLevelEmphasis": "Tumor_wavelet-HHL_glrlm_ShortRunHighGrayLevelEmphasis",
    "Tumor_wavelet-HHL_gldM_DependenceEntropy": "Tumor_wavelet-HHL_gldm_DependenceEntropy",
    "Tumor_wavelet-HHL_glcM_ClusterShade": "Tumor_wavelet-HHL_glcm_ClusterShade",
    "Tumor_wavelet-HLH_glcM_ClusterShade": "Tumor_wavelet-HLH_glcm_ClusterShade",
    "Tumor_wavelet-LHL_glcM_ClusterShade": "Tumor_wavelet-LHL_glcm_ClusterShade",
    "Tumor_log-sigma-3-mm-3D_glcM_ClusterShade": "Tumor_log-sigma-3-mm-3D_glcm_ClusterShade",
    "Tumor_log-sigma-1-mm-3D_gldM_DependenceVariance": "Tumor_log-sigma-1-mm-3D_gldm_DependenceVariance",
    "Tumor_log-sigma-1-mm-3D_firstorder_Skewness": "Tumor_log-sigma-1-mm-3D_firstorder_Skewness",
    "Tumor_log-sigma-1-mm-3D_glszm_GrayLevelNonUniformityNormalized":
        "Tumor_log-sigma-1-mm-3D_glszm_GrayLevelNonUniformityNormalized",
    # Liver parenchyma.
    "Ratio between the tumor volume and the liver parenchyma volume": "Tumor_to_Rliver_volume_ratio",
    "Rliver_original_shape_Sphericity": "Rliver_original_shape_Sphericity",
    "Rliver_original_shape_MajorAxisLength": "Rliver_original_shape_MajorAxisLength",
    "Rliver_original_shape_Maximum2DDiameterColumn": "Rliver_original_shape_Maximum2DDiameterColumn",
    "Rliver_original_glcM_MaximumProbability": "Rliver_original_glcm_MaximumProbability",
    "Rliver_gradient_glrM_LongRunHighGrayLevelEmphasis": "Rliver_gradient_glrlm_LongRunHighGrayLevelEmphasis",
    "Rliver_gradient_glrM_LongRunEmphasis": "Rliver_gradient_glrlm_LongRunEmphasis",
    "Rliver_gradient_glrM_LongRunLowGrayLevelEmphasis": "Rliver_gradient_glrlm_LongRunLowGrayLevelEmphasis",
    "Rliver_wavelet-HLL_glszm_ZoneEntropy": "Rliver_wavelet-HLL_glszm_ZoneEntropy",
    "Rliver_wavelet-HHL_glszm_SmallAreaLowGrayLevelEmphasis": "Rliver_wavelet-HHL_glszm_SmallAreaLowGrayLevelEmphasis",
    "Rliver_wavelet-LHH_glszm_SmallAreaLowGrayLevelEmphasis": "Rliver_wavelet-LHH_glszm_SmallAreaLowGrayLevelEmphasis",
    "Rliver_wavelet-LHH_glszm_GrayLevelNonUniformityNormalized":
        "Rliver_wavelet-LHH_glszm_GrayLevelNonUniformityNormalized",
    "Rliver_log-sigma-1-mm-3D_glszm_SmallAreaLowGrayLevelEmphasis":
        "Rliver_log-sigma-1-mm-3D_glszm_SmallAreaLowGrayLevelEmphasis",
}

#: Supplementary Figure 1's codes -> the Table 3 factor they stand for (the legend's own spelling differs).
PAPER_FIGURE1_CODES: dict[str, str] = {
    "C-a": "Treatment style",
    "C-b": "BCLC stage",
    "C-c": "AFP level",
    "C-d": "Child-Pugh grade",
    "T-a": "Tumor_log-sigma-1-mm-3D_firstorder_Skewness",
    "T-b": "Tumor_log-sigma-3-mm-3D_glcM_ClusterShade",
    "T-c": "Tumor_original_glcM_MaximumProbability",
    "T-d": "Tumor_wavelet-HLH_glcM_ClusterShade",
    "T-e": "Tumor_wavelet-HHL_gldM_DependenceEntropy",
    "T-f": "Tumor_log-sigma-1-mm-3D_glszm_GrayLevelNonUniformityNormalized",
    "T-g": "Median CT attenuation of the tumor",
    "T-h": "Tumor_wavelet-LHL_glcM_ClusterShade",
    "T-i": "Tumor_log-sigma-1-mm-3D_gldM_DependenceVariance",
    "T-j": "Tumor_wavelet-HHL_glrM_ShortRunHighGrayLevelEmphasis",  # legend: ..._gldm_ShortRun...
    "T-k": "Tumor_wavelet-HHL_glcM_ClusterShade",
    "L-a": "Rliver_original_shape_Maximum2DDiameterColumn",
    "L-b": "Rliver_wavelet-LHH_glszm_SmallAreaLowGrayLevelEmphasis",
    "L-c": "Rliver_original_shape_Sphericity",
    "L-d": "Rliver_wavelet-HLL_glszm_ZoneEntropy",
    "L-e": "Ratio between the tumor volume and the liver parenchyma volume",
    "L-f": "Rliver_log-sigma-1-mm-3D_glszm_SmallAreaLowGrayLevelEmphasis",
    "L-g": "Rliver_original_glcM_MaximumProbability",
    "L-h": "Rliver_gradient_glrM_LongRunHighGrayLevelEmphasis",  # legend: ..._gldm_LongRun...
    "L-i": "Rliver_gradient_glrM_LongRunEmphasis",
    "L-j": "Rliver_gradient_glrM_LongRunLowGrayLevelEmphasis",
    "L-k": "Rliver_original_shape_MajorAxisLength",
    "L-l": "Rliver_wavelet-HHL_glszm_SmallAreaLowGrayLevelEmphasis",
    "L-m": "Rliver_wavelet-LHH_glszm_GrayLevelNonUniformityNormalized",
}

def paper_column(name: str) -> str:
    """hccrad's column for a paper factor name or Figure 1 code."""
    if name in PAPER_FIGURE1_CODES:
        name = PAPER_FIGURE1_CODES[name]
    try:
        return PAPER_TABLE3[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a factor of the paper's Supplementary Table 3") from None


#: PyRadiomics' feature classes in words.
CLASS_WORDS = {
    "firstorder": "intensity histogram", "shape": "shape", "shape2D": "2D shape",
    "glcm": "gray-level co-occurrence (GLCM)", "glrlm": "gray-level run lengths (GLRLM)",
    "glszm": "gray-level size zones (GLSZM)", "gldm": "gray-level dependence (GLDM)",
    "ngtdm": "neighbouring gray-tone difference (NGTDM)",
}
#: The regions in words, and the group of factors they belong to.
REGION_WORDS = {"Tumor": ("tumor", "tumor"), "Rliver": ("liver parenchyma", "liver")}


def _image_type_words(image_type: str) -> str:
    if image_type == "original":
        return "the CT itself"
    if image_type.startswith("wavelet"):
        level, band = image_type.split("-", 1)
        depth = level.removeprefix("wavelet") or "1"
        return (f"wavelet band {band} (level {depth}; per axis x, y, z: L low-pass, H high-pass)" if depth != "1"
                else f"wavelet band {band} (per axis x, y, z: L low-pass, H high-pass)")
    if image_type.startswith("log-sigma-"):
        sigma = image_type.removeprefix("log-sigma-").removesuffix("-mm-3D").replace("-", ".")
        return f"Laplacian of Gaussian, sigma {sigma} mm"
    return {"gradient": "gradient magnitude", "square": "squared intensities", "squareroot": "square-root intensities",
            "logarithm": "log intensities", "exponential": "exponential intensities"}.get(image_type, image_type)


#: PyRadiomics' abbreviated feature names, in words.
_WORD_NAMES = {"Idm": "inverse difference moment", "Idmn": "inverse difference moment normalized",
               "Id": "inverse difference", "Idn": "inverse difference normalized", "Imc1": "informational measure "
               "of correlation 1", "Imc2": "informational measure of correlation 2",
               "MCC": "maximal correlation coefficient"}


def _words(camel: str) -> str:
    """``ClusterShade`` -> ``cluster shade``, ``Maximum2DDiameterSlice`` -> ``maximum 2D diameter slice``,
    ``10Percentile`` -> ``10th percentile``; PyRadiomics' abbreviations spelled out (``Idmn``, ``MCC``)."""
    import re

    if camel in _WORD_NAMES:
        return _WORD_NAMES[camel]
    parts = re.findall(r"\d+D(?=[A-Z]|$)|\d+|[A-Z]{2,}(?=[A-Z][a-z]|\b|\d)|[A-Z]?[a-z]+|[A-Z]+", camel)
    words = [part if (part.isupper() and len(part) > 1) or re.fullmatch(r"\d+D", part) else part.lower()
             for part in parts]
    for k, word in enumerate(words[:-1]):
        if word.isdigit() and words[k + 1] == "percentile":
            words[k] = f"{word}th"
    return " ".join(words) or camel


def factor_group(column: str) -> str:
    """``clinical``, ``tumor`` or ``liver`` (Supplementary Table 3's groups): the tumor-to-liver volume ratio and
    the portal vein count as liver parenchyma factors, as the paper files them; the T&L risk score as
    ``tumor and liver``."""
    if column in ("TL_risk_score", "T&L risk score"):
        return "tumor and liver"
    if column.startswith(("Rliver_", "PV_", "Tumor_to_Rliver")):
        return "liver"
    if column.startswith("Tumor_"):
        return "tumor"
    return "clinical"


def paper_name(column: str) -> str:
    """The paper's name of a factor (Supplementary Tables 2 and 3, in their spelling) when it is one of its
    factors, else hccrad's column name."""
    from hccrad.features.morphology import PAPER_MORPHOLOGY_NAMES

    for names in (PAPER_TABLE3, PAPER_MORPHOLOGY_NAMES):
        for paper, ours in names.items():
            if ours == column:
                return paper
    return column


def describe_feature(column: str) -> str:
    """A feature column in words: ``Tumor_wavelet-HLH_glcm_ClusterShade`` -> ``tumor texture: cluster shade of
    the gray-level co-occurrence (GLCM), on the wavelet band HLH (...)``; morphological factors get the paper's
    Table 2 name."""
    from hccrad.features.morphology import PAPER_MORPHOLOGY_NAMES

    morphological = {ours: paper for paper, ours in PAPER_MORPHOLOGY_NAMES.items()}
    if column in morphological:
        return morphological[column]
    if column in ("TL_risk_score", "T&L risk score"):
        return "the T&L model's risk score (tumor and liver image features)"
    parts = column.split("_", 3)
    if len(parts) == 4 and parts[0] in REGION_WORDS:
        region, image_type, feature_class, feature = parts
        what = "shape" if feature_class.startswith("shape") else "texture" if feature_class not in (
            "firstorder",) else "intensity"
        detail = (_words(feature) if feature_class.startswith("shape")
                  else f"{_words(feature)} of the {CLASS_WORDS.get(feature_class, feature_class)}, on "
                       f"{_image_type_words(image_type)}")
        return f"{REGION_WORDS[region][0]} {what}: {detail}"
    return column
