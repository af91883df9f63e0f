"""One module per pipeline stage: ``prepare``, ``train``, ``sample``, ``score``, and ``aggregate``, which
runs a stage over the seeds and summarizes them. Each reads a config, calls the library and writes
artifacts; the DVC pipeline (``fmexp <stage>``) and the sweep both call them, so there is one way to
train, sample and score. Each stage's module is a dependency of its own DVC stage only: a change to
scoring never makes training stale.
"""
