"""Survival models: preprocessing, feature selection and the Cox models C, T, T&L and C-T&L."""
