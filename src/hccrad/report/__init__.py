"""Report: one self-contained HTML file with every table and figure of the study."""
