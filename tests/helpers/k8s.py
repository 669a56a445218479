"""Kubernetes schema checks for tests: built-in kinds against Kubernetes' published OpenAPI schemas
(kubernetes-validate, strict: an unknown field is an error, as `kubectl apply --validate=strict` says), and the
TrainJob against Kubeflow Trainer's own CRD schema, vendored in deploy/schemas/ (source and version inside)."""

from __future__ import annotations

import functools
import json
from typing import Any

from tests.conftest import ROOT

K8S_VERSION = "1.32"  # the oldest Kubernetes that Kubeflow 1.10 and Trainer v2.3 support
TRAINJOB_SCHEMA = ROOT / "deploy" / "schemas" / "trainer.kubeflow.org_trainjobs.v2.3.0.json"


def k8s_errors(doc: dict[str, Any]) -> list[str]:
    """[] when `doc` is valid for its apiVersion/kind in Kubernetes K8S_VERSION; else why not (one line each)."""
    import kubernetes_validate

    if doc.get("kind") == "TrainJob":
        return trainjob_errors(doc)
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = "/".join(map(str, err.absolute_path))
        return [f"{doc['kind']}/{doc['metadata'].get('name')}: {where}: {err.message}"]
    return []


@functools.cache
def _trainjob_validator() -> Any:
    import jsonschema

    vendored = json.loads(TRAINJOB_SCHEMA.read_text())
    return jsonschema.Draft7Validator(_strict(vendored["openAPIV3Schema"]))


def _strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused (the API server prunes them silently; strict field
    validation rejects them): additionalProperties false wherever properties are listed and unknown fields are
    not preserved."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def trainjob_errors(doc: dict[str, Any]) -> list[str]:
    errors = _trainjob_validator().iter_errors(doc)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
