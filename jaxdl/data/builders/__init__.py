"""The built-in datasets: offline TFDS builders, one module each, exporting `BUILDER` (see jaxdl.registry).

Nothing is imported here: resolving a built-in name imports its module, which registers the builder with tfds.
"""
