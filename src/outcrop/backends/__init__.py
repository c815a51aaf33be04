"""Model backends: one module per backend kind, created from catalog entries."""
