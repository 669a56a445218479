"""The evaluate step of a forecast or a token model never loads scikit-learn (1-2 s of every such process's
start-up): only the classifier scores and plots import it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

BLOCKED = """
import sys
sys.modules["sklearn"] = None  # `import sklearn` fails from here on, as if it were not installed
import components.evaluate.series, components.evaluate.step, components.evaluate.tokens
from components.evaluate.metrics import regression_metrics
try:
    regression_metrics([1.0], [1.0])
except ImportError:
    print("metrics need sklearn")
"""


def test_evaluate_modules_import_without_scikit_learn() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKED], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "metrics need sklearn"
