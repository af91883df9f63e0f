"""Configuration: the typed schema of ``params.yaml``, its validation, Hydra's override grammar, and the
plan that resolves one run's config into objects once."""
