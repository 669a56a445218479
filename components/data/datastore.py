"""Data versioning: data/ (raw datasets under data/raw) is one DVC-tracked snapshot, data.dvc, kept in a DVC remote.

`pull` gets the snapshot from the remote; when the remote does not have it yet (a fresh machine
with the default local remote), it rebuilds data/raw from the built-in sources, checks that the
bytes hash to exactly what data.dvc records, and pushes the snapshot so the remote has it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from components.core.errors import DlpipeError
from components.core.layout import REPO
from components.core.secrets import mask
from components.data.ingest import DATASETS, ingest

DVC_FILE = "data.dvc"


class DataVersionError(DlpipeError):
    """data/raw does not match data.dvc, or DVC itself failed."""


def dvc(*args: str, cwd: Path = Path("."), check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise DataVersionError(mask(f"`dvc {' '.join(args)}` failed:\n{proc.stderr.strip() or proc.stdout.strip()}"))
    return proc


def rebuild(root: Path = Path(".")) -> list[Path]:
    """Write every built-in dataset into data/raw (deterministic bytes)."""
    raw = root / "data" / "raw"
    return [ingest(name, raw) for name in sorted(DATASETS)]


def in_sync(root: Path = Path(".")) -> bool:
    """True when data/ hashes to what data.dvc records (whether or not the DVC cache holds it yet)."""
    status = json.loads(dvc("status", "--json", DVC_FILE, cwd=root).stdout or "{}")
    changes = [change for entry in status.get(DVC_FILE, []) for change in entry.get("changed outs", {}).values()]
    return all(change == "not in cache" for change in changes)


def pull(root: Path = Path(".")) -> str:
    """Materialise data/raw matching data.dvc; return how ('remote' or 'rebuilt')."""
    if not (root / DVC_FILE).is_file():
        raise DataVersionError(f"{DVC_FILE} not found in {root.resolve()}: run `dlpipe data snapshot` first")
    if dvc("pull", "--quiet", DVC_FILE, cwd=root, check=False).returncode == 0 and in_sync(root):
        return "remote"
    rebuild(root)
    if not in_sync(root):
        raise DataVersionError(
            "data/raw rebuilt from the built-in sources does not hash to data.dvc: a source changed "
            "(library version?). Inspect with `dvc diff`, then `dlpipe data snapshot` to record the new data."
        )
    dvc("commit", "--force", "--quiet", DVC_FILE, cwd=root)
    dvc("push", "--quiet", DVC_FILE, cwd=root)
    return "rebuilt"


def snapshot(root: Path = Path(".")) -> str:
    """Rebuild data/raw, record it in data.dvc (`dvc add data`) and push it; return the new md5."""
    if (root / "data").exists():
        shutil.rmtree(root / "data")
    rebuild(root)
    dvc("add", "--quiet", "data", cwd=root)
    dvc("push", "--quiet", DVC_FILE, cwd=root)
    import yaml

    return yaml.safe_load((root / DVC_FILE).read_text())["outs"][0]["md5"]


def fetch(dataset: str, out: Path, remote: str) -> Path:
    """Kubeflow's ingest with a DVC remote (s3://bucket/dlpipe, or a folder): pull data/raw/<dataset> exactly as
    the image's data.dvc records it into `out/<dataset>`. S3 credentials come from $AWS_ACCESS_KEY_ID /
    $AWS_SECRET_ACCESS_KEY, a MinIO endpoint from $AWS_ENDPOINT_URL."""
    import os
    import tempfile

    recorded = REPO / DVC_FILE
    if not recorded.is_file():
        raise DataVersionError(f"{recorded} not found: the image must contain data.dvc (see Dockerfile)")
    with tempfile.TemporaryDirectory(prefix="dlpipe-dvc-") as tmp:
        work = Path(tmp)
        shutil.copy(recorded, work / DVC_FILE)
        dvc("init", "--no-scm", "--quiet", cwd=work)
        dvc("remote", "add", "--default", "pipeline", remote, cwd=work)
        if os.environ.get("AWS_ENDPOINT_URL"):
            dvc("remote", "modify", "pipeline", "endpointurl", os.environ["AWS_ENDPOINT_URL"], cwd=work)
        dvc("pull", "--quiet", f"data/raw/{dataset}", cwd=work)
        shutil.copytree(work / "data" / "raw" / dataset, Path(out) / dataset, dirs_exist_ok=True)
    return Path(out) / dataset
