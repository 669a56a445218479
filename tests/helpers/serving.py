"""A real `bentoml serve` on loopback for every test that serves a model, and the small fixtures of serving
tests (a masked-LM export that has nothing to serve).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.core.contract import TaskMeta


def toy_meta(kind: str = "tabular", objective: str = "binary", **fields: Any) -> TaskMeta:
    """A meta.json of `kind` with what the contract requires and `fields`, for helpers that need no model."""
    spec = {"name": "x", "shape": [None, 3]}
    required = {"task": "toy", "dataset": "toy", "splits": {"train": 1}, "data_sha256": "0", "input": spec}
    return TaskMeta.model_validate({**required, "output": spec, "kind": kind, "objective": objective, **fields})


ROOT = Path(__file__).resolve().parents[2]


def _masked_lm_export(folder: Path, task: str) -> Path:
    """An export folder whose meta.json is a masked-LM pretraining task (what it holds is never read)."""
    meta = toy_meta("tokens", "masked_lm", task=task)
    meta.write(folder / "data")
    (folder / "model.onnx").write_bytes(b"")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # the group holds bentoml's worker processes too
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# bentoml picks free ports for its own sockets (circus's control socket, workers) by binding and releasing
# them; on a busy machine another process can take one before circus binds it again. A start that dies of
# that is tried again on new ports; any other failure fails the test at once.
_PORT_RACE = "Address already in use"
_STARTS = 3


def _one_worker(env: dict[str, str]) -> dict[str, str]:
    """`env` with every serving family on one HTTP worker process ($DLPIPE_SERVING's own entries win)."""
    from serving.settings import SETTINGS

    serving = json.loads(env.get("DLPIPE_SERVING") or "{}")
    for family in SETTINGS:
        serving.setdefault(family, {}).setdefault("workers", 1)
    return env | {"DLPIPE_SERVING": json.dumps(serving)}


@contextlib.contextmanager
def bentoml_process(
    service: str, tmp: Path, env: dict[str, str], ready_s: float = 90, per_core: bool = False
) -> Iterator[tuple[subprocess.Popen, str]]:
    """A real `bentoml serve` of `service` (a service path or a Bento tag) on a free loopback port, with
    `env` added to this process's environment; the process and its URL, until exit.

    One HTTP worker process unless `per_core` (the services' default, one per core): each more costs ~3 s of CPU
    to start (a tabular service: 10 CPU-seconds to ready with two workers, 7 with one) and answers the same."""
    env = {k: v for k, v in os.environ.items() if k != "DLPIPE_MODEL_DIR"} | env
    env = env if per_core else _one_worker(env)
    env |= {"BENTOML_HOME": env.get("BENTOML_HOME") or str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    for start in range(1, _STARTS + 1):
        port = str(_free_port())
        url = f"http://127.0.0.1:{port}"
        log_path = tmp / "server.log"
        cmd = [sys.executable, "-m", "bentoml", "serve", service, "--host", "127.0.0.1", "--port", port]
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + ready_s
        ready = False
        try:
            while not ready:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                with contextlib.suppress(httpx.TransportError):
                    ready = httpx.get(f"{url}/readyz", timeout=1).status_code == 200
                if not ready:
                    time.sleep(0.2)
        except BaseException:
            _stop(proc)
            raise
        if ready:
            break
        _stop(proc)
        text = log_path.read_text()
        if _PORT_RACE not in text or start == _STARTS:
            pytest.fail(f"server did not get ready (start {start} of {_STARTS}):\n{text[-3000:]}")
    try:
        yield proc, url
    finally:
        _stop(proc)


@contextlib.contextmanager
def bentoml_server(service: str, task: str, tmp: Path, ready_s: float = 90, per_core: bool = False) -> Iterator[str]:
    """A real `bentoml serve` of `service` on `models:/<task>@champion` on a free loopback port, until exit."""
    env = {"DLPIPE_TASK": task, "DLPIPE_MODEL_URI": f"models:/{task}@champion"}
    with bentoml_process(service, tmp, env, ready_s, per_core) as (_, url):
        yield url


def toy_tasks() -> dict[str, Any]:
    """One `Task` of every serving family, built from toy bundles (meta.json, a tiny tokenizer; no graphs, so
    no session is opened): what the request validators are derived from, without a trained model."""
    from components.data.text.tokenization import TRUNCATION, train_tokenizer
    from serving import families
    from serving.bundle import TOKENIZER, Bundle

    tokenizer = train_tokenizer(["a good film", "a bad film"] * 4, vocab_size=40, min_frequency=1).to_str().encode()
    chars = list("[]ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")
    scaler = {"mean": [1.0, 2.0], "scale": [2.0, 0.5]}
    pre = {"resize": [8, 8], "grayscale": True, "channels": 1, "mean": [0.5], "std": [0.25]}
    text_tok = {"max_length": 16, "max_chars": 200, "truncation": TRUNCATION}
    metas = {
        "tabular": toy_meta(feature_names=["mean radius", "x"], classes=["no", "yes"], scaler=scaler),
        "image": toy_meta("image", "multiclass", classes=["a", "b", "c"], preprocessing=pre),
        "forecast": toy_meta(
            "series", "regression", scaler={"mean": [1.0], "scale": [2.0]}, horizon=2, series={"window": 4}
        ),
        "text": toy_meta("text", classes=["neg", "pos"], tokenizer=text_tok),
        "encoder": toy_meta("text", classes=["neg", "pos"], tokenizer=text_tok),
        "decoder": toy_meta("tokens", "causal_lm", vocab=chars, model_inputs={"max_len": 8}),
        "seq2seq": toy_meta(
            "tokens",
            "seq2seq",
            vocab=["[PAD]", "[BOS]", "[EOS]", "[UNK]", *"0123456789", "one"],
            model_inputs={"max_len": 6},
        ),
    }
    files = {"text": {TOKENIZER: tokenizer}, "encoder": {TOKENIZER: tokenizer}}
    return {
        name: families.FAMILIES[name].task_class()(Bundle(b"", meta, "toy", files.get(name)))
        for name, meta in metas.items()
    }
