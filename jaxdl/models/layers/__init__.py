"""Pieces the built-in models share (heads, pooling). A package, so the model registry does not list it."""
