"""The mathematics of flow matching: probability paths, couplings, objectives, ODE solves, likelihoods
and sample metrics. Pure tensor code: it imports torch, torchdiffeq, numpy, scipy and POT, and never
touches disk. Import from the modules themselves (``fmexp.flow.paths``); this package imports nothing."""
