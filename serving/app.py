"""One task's own service, whatever its family: `bentoml serve serving.app:Service` (what `dlpipe serve --task T`
runs and every Bento names).

The task and its model come from the environment (DLPIPE_TASK, DLPIPE_MODEL_URI / DLPIPE_MODEL_DIR; default
`models:/tabular@champion`), or from serving/packed.json inside a Bento; the family from the bundle itself
(serving/families: its kind and what the exported model carries). Building the service loads the model, so
only BentoML imports this module.
"""

from __future__ import annotations

from serving import families, service
from serving.bundle import bundle_from_env

_bundle = bundle_from_env("tabular")
Service = service.build([families.family_of(_bundle).task_class()(_bundle)])
