"""Data: ingest raw datasets (ingest, numbers, images), version them with DVC (datastore), split them
(splits), prepare each kind of task into arrays and meta.json (prepare dispatches by kind: tabular, image_prepare,
series, text/), and the training-time augmentation policy (augment).

Imports: components.core, components.config.
"""
