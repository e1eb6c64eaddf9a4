"""hccrad: 3D synergistic tumor-liver analysis for predicting treatment response in hepatocellular carcinoma."""

__version__ = "0.1.0"
