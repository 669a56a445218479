"""Test-split scores of classifiers and regressors (scikit-learn metrics, imported when a score is asked for: the
evaluate step of a forecast or a token model never loads scikit-learn)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    from sklearn import metrics as skm

    pred = proba.argmax(1)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 rounding: make rows sum to exactly 1
    scores = {
        "accuracy": skm.accuracy_score(y, pred),
        "log_loss": skm.log_loss(y, proba, labels=list(range(len(classes)))),
    }
    if len(classes) == 2:
        scores.update(
            precision=skm.precision_score(y, pred, zero_division=0),
            recall=skm.recall_score(y, pred, zero_division=0),
            f1=skm.f1_score(y, pred, zero_division=0),
            roc_auc=skm.roc_auc_score(y, proba[:, 1]),
        )
    else:
        scores["macro_f1"] = skm.f1_score(y, pred, average="macro", zero_division=0)
    return scores


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(truth, pred))),
        "mae": skm.mean_absolute_error(truth, pred),
        "r2": skm.r2_score(truth, pred),
    }
