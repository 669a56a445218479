"""kfp.local's DockerRunner set up for `dlpipe pipeline run --local --container IMAGE`: every step in a container of
the project image, through any Docker-compatible API ($DOCKER_HOST: Docker, or `podman system service`).

The containers see the pipeline root (mounted at the same path: kfp.local's one mount) and nothing else of this
machine: they run as the calling user (outputs stay theirs), with no network unless MLflow is a server, and a
local MLflow store inside the pipeline root. kfp.local passes an image set from a pipeline parameter through
unresolved (it would pull the literal placeholder), so here every step runs the image the run names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kfp.local
from kfp.local import docker_task_handler

from components.core import tracking
from components.core.errors import DlpipeError


class _Handler(docker_task_handler.DockerTaskHandler):
    """kfp.local's handler with two fixes: the run's image (see above), and the exit status read before the
    container is removed (kfp.local's auto-removed container reports a step that exits before its logs are
    attached as succeeded)."""

    image_override = ""

    def __init__(self, image: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(self.image_override or image, *args, **kwargs)

    def run(self) -> Any:
        import docker
        from kfp.local import status

        client = docker.from_env()
        try:
            args = {**self.runner.container_run_args, **({"environment": self.env_vars} if self.env_vars else {})}
            container = client.containers.run(
                image=self.image,
                command=self.full_command,
                volumes=self.get_volumes_to_mount(client),
                detach=True,
                **args,
            )
            try:
                for line in container.logs(stream=True, follow=True):
                    print(line.decode(), end="")
                code = container.wait()["StatusCode"]
            finally:
                container.remove(force=True)
        finally:
            client.close()
        return status.Status.SUCCESS if code == 0 else status.Status.FAILURE


def docker_runner(image: str, root: Path) -> kfp.local.DockerRunner:
    """A DockerRunner for `image`; fails in one line when the Docker API or the image is missing."""
    import docker

    try:
        client = docker.from_env()
        found = any(image in i.tags for i in client.images.list())
        client.close()
    except docker.errors.DockerException as err:
        raise DlpipeError(f"no Docker API at {os.environ.get('DOCKER_HOST', 'the default socket')}: {err}") from None
    if not found:
        raise DlpipeError(f"image {image} not found on {os.environ.get('DOCKER_HOST', 'docker')}: run `make image`")
    _Handler.image_override = image
    docker_task_handler.DockerTaskHandler = _Handler
    uri = tracking.tracking_uri()
    remote = uri.startswith(("http://", "https://"))
    env = {
        "HOME": "/tmp",
        "DLPIPE_HOME": str(root),
        "MLFLOW_TRACKING_URI": uri if remote else f"sqlite:///{root / 'mlflow.db'}",
        "DLPIPE_GIT_COMMIT": tracking.provenance()["git_commit"],
    }
    return kfp.local.DockerRunner(  # entrypoint [""]: the step's command replaces `dlpipe`, as in a pod
        entrypoint=[""],
        user=f"{os.getuid()}:{os.getgid()}",
        environment=env,
        network_mode="host" if remote else "none",
    )
