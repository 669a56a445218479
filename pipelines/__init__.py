"""Pipelines and the command line: the Kubeflow pipelines built from params.yaml (build.py) and the `dlpipe` CLI
(cli/). The top layer: may import anything of components/ and serving.cli; nothing imports it."""
