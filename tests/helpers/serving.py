"""A real `bentoml serve` on loopback for the tests that serve a model outside tests/integration/serving/.

The harness is defined in tests/integration/serving/test_serving.py, moved there whole and unedited while a
concurrent branch changes it; its definitions move here once that file can be edited."""

from __future__ import annotations

from tests.integration.serving.test_serving import bentoml_process, bentoml_server

__all__ = ["bentoml_process", "bentoml_server"]
