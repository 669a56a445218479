"""Data versioning: data/ (raw datasets under data/raw) is one DVC-tracked snapshot, data.dvc, kept in a DVC remote.

`pull` gets the snapshot from the remote and checks every pulled file against the md5 data.dvc records (DVC
itself trusts an object's name: a corrupt object in the remote would be checked out silently). When a local-folder
remote does not have the snapshot yet (a fresh machine with the default remote), it rebuilds data/raw from the
built-in sources, checks that the bytes hash to exactly what data.dvc records, and pushes the snapshot. Any other
failed pull is reported as is: nothing is rebuilt or pushed over a remote that could not be read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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
    """Run a `dvc` command. Its usage analytics stay off: a project that `dvc init` has just made (Kubeflow's
    ingest makes one) has them on, and each command would fork a daemon that posts a report to DVC's server (in
    a cluster without internet it fails and leaves the report in $TMPDIR)."""
    exe = Path(sys.executable).with_name("dvc")
    cmd = [str(exe) if exe.exists() else "dvc", *args]
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise DataVersionError(mask(f"`dvc {' '.join(args)}` failed:\n{proc.stderr.strip() or proc.stdout.strip()}"))
    return proc


def rebuild(root: Path = Path(".")) -> list[Path]:
    """Write every built-in dataset into data/raw (deterministic bytes)."""
    raw = root / "data" / "raw"
    return [ingest(name, raw) for name in sorted(DATASETS)]


def in_sync(root: Path = Path(".")) -> bool:
    """True when data/ hashes to what data.dvc records, whether or not the DVC cache holds it yet. (`dvc status`
    cannot tell: while the recorded object is missing from the cache, as in a fresh clone, it reports "not in
    cache" whatever the workspace holds.)"""
    from dvc.repo import Repo  # DVC's Python API, imported only by the commands that check data

    with contextlib.chdir(root), Repo(".") as repo:
        (out,) = repo.stage.load_one(DVC_FILE).outs
        return out.exists and not out.changed_checksum()


def pull(root: Path = Path(".")) -> str:
    """Materialise data/raw matching data.dvc; return how ('remote' or 'rebuilt')."""
    if not (root / DVC_FILE).is_file():
        raise DataVersionError(f"{DVC_FILE} not found in {root.resolve()}: run `dlpipe data snapshot` first")
    proc = dvc("pull", DVC_FILE, cwd=root, check=False)
    if proc.returncode == 0:
        verify(root)
        if in_sync(root):
            return "remote"
    elif not _missing_from_local_remote(root, proc):
        output = "\n".join(line for line in (proc.stderr + proc.stdout).splitlines() if line.strip())
        raise DataVersionError(
            mask(f"`dvc pull {DVC_FILE}` failed; nothing was rebuilt or pushed:\n{output}\n(check the remote with "
                 "`dvc remote list` and its credentials, then run `dlpipe data pull` again)")
        )  # fmt: skip
    rebuild(root)
    if not in_sync(root):
        raise DataVersionError(
            "data/raw rebuilt from the built-in sources does not hash to data.dvc: a source changed (a library's "
            "or Python's version?), or data.dvc records datasets of your own that only its remote holds (point "
            "`dvc remote` at it). Inspect with `dvc diff`, then `dlpipe data snapshot` to record the new data."
        )
    dvc("commit", "--force", "--quiet", DVC_FILE, cwd=root)
    dvc("push", "--quiet", DVC_FILE, cwd=root)
    return "rebuilt"


def _missing_from_local_remote(root: Path, proc: subprocess.CompletedProcess[str]) -> bool:
    """The pull failed only because the default remote, a folder on this machine, lacks the snapshot (a fresh
    clone). DVC reports an unreachable network remote the same way, so only a local folder qualifies."""
    if "Missing cache files" not in proc.stderr:
        return False
    name = dvc("remote", "default", cwd=root, check=False).stdout.strip()
    url = dvc("config", f"remote.{name}.url", cwd=root, check=False).stdout.strip() if name else ""
    return bool(url) and ("://" not in url or url.startswith("file://"))


def verify(root: Path, under: str = "") -> None:
    """Check that every file of data/ (or of data/<under>) hashes to the md5 data.dvc records, through the
    directory listing in the DVC cache (itself checked). A corrupt file is removed with its cache object, so
    neither is used and the next pull fetches it again."""
    import yaml

    root = Path(root)
    out = yaml.safe_load((root / DVC_FILE).read_text())["outs"][0]
    listing = _cache_object(root, out["md5"])
    if not listing.is_file() or _md5(listing) != out["md5"].removesuffix(".dir"):
        listing.unlink(missing_ok=True)
        raise DataVersionError(f"the DVC listing {out['md5']} of data/ is missing or corrupt: run the pull again")
    corrupt = []
    for entry in json.loads(listing.read_text()):
        if not entry["relpath"].startswith(under):
            continue
        path = root / out["path"] / entry["relpath"]
        if not path.is_file() or _md5(path) != entry["md5"]:
            corrupt.append(entry["relpath"])
            path.unlink(missing_ok=True)
            _cache_object(root, entry["md5"]).unlink(missing_ok=True)
    if corrupt:
        raise DataVersionError(
            f"{len(corrupt)} file(s) pulled into {out['path']}/ do not match their md5 in {DVC_FILE} (first: "
            f"{corrupt[0]}): the DVC remote holds a corrupt object; they were removed. Restore the object in the "
            "remote (`dvc push` from a good copy), then pull again"
        )


def _cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(root: Path = Path(".")) -> str:
    """Rebuild the built-in datasets in data/raw, record data/ (with the user's own datasets that `dlpipe data
    ingest` wrote there, kept as they are) in data.dvc (`dvc add data`) and push it; return the new md5."""
    raw = root / "data" / "raw"
    for name in DATASETS:
        if (raw / name).exists():
            shutil.rmtree(raw / name)
    rebuild(root)
    dvc("add", "--quiet", "data", cwd=root)
    dvc("push", "--quiet", DVC_FILE, cwd=root)
    import yaml

    return yaml.safe_load((root / DVC_FILE).read_text())["outs"][0]["md5"]


def fetch(dataset: str, out: Path, remote: str) -> Path:
    """Kubeflow's ingest with a DVC remote (s3://bucket/dlpipe, or a folder): pull data/raw/<dataset> exactly as
    the image's data.dvc records it into `out/<dataset>`. S3 credentials come from $AWS_ACCESS_KEY_ID /
    $AWS_SECRET_ACCESS_KEY, a MinIO endpoint from $AWS_ENDPOINT_URL."""
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
        verify(work, under=f"raw/{dataset}/")
        shutil.copytree(work / "data" / "raw" / dataset, Path(out) / dataset, dirs_exist_ok=True)
    return Path(out) / dataset
