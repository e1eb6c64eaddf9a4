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
