"""The pipeline steps, one subpackage per lifecycle stage. Each step is one plain function with typed inputs
and outputs; the DVC stages (through the `dlpipe` CLI), the Kubeflow components (components/kubeflow.py) and the
tests call that same function.

Layers, low to high (a module imports its own subpackage or lower layers only; tests/unit/test_architecture.py
checks it): core < config < data < train < tune, evaluate, release < experiments < kubeflow.
"""
