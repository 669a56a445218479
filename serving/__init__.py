"""Serving: trained models as HTTP services (BentoML over ONNX Runtime), one task per service or many behind the
gateway, and the Bento that packs one task with its model.

Owns: loading a model bundle (bundle.py), ONNX Runtime sessions (session.py), per-task settings (settings.py),
the request and response models derived from meta.json (schemas.py), the families that serve each kind of task
and the registry that picks one (families/), the service builder (service.py), the per-task entry point
(app.py), the gateway (gateway.py), the guard middleware (guard.py), metrics and logs (telemetry.py), packaging
(package.py), the Kubernetes manifests of deploy/serving (manifests.py), `dlpipe serve` (cli.py) and the
playground page.

May import components.core, components.config, components.data and components.release, never training,
tuning, evaluation or experiments code, models/ or torch (session.py asks the NVIDIA driver about a GPU directly).
"""
