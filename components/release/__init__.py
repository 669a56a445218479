"""Release: ONNX export with a parity check against PyTorch (export) and the MLflow registry: a version
per run, alias `champion` moved only by a better model, and fetching a registered model back (register).

Imports: components.core, components.config, components.data, components.train (export reads the checkpoint).
Serving imports this package's register module to fetch models; it never imports train.
"""
