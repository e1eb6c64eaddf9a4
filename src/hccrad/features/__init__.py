"""Features: morphological factors and PyRadiomics features of the tumor and the remnant liver."""
