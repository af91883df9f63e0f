"""The training loop, its resumable state, and data-parallel training under torchrun."""
