"""Process plumbing: atomic file writes, worker processes that share the cores, and signals."""
