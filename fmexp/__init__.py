"""fmexp: flow matching experiments (Lipman et al. 2022, arXiv 2210.02747)."""

__version__ = "0.1.0"
