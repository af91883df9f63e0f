"""A researcher's own components for fmexp, named by ``_target_`` in ``params.yaml`` and in studies."""
