"""The DVC pipeline: where files live, one module per stage, the generated ``dvc.yaml``, DVC's plots and
the smoke run."""
