"""The report: the paper's tables, the figures, and the one self-contained page."""
