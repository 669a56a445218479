"""ONNX Runtime providers: CUDA only when the NVIDIA driver reports a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving import session


def test_providers_cuda_only_when_the_driver_reports_a_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ctypes.util

    import onnxruntime as ort

    no_driver = ctypes.util.find_library("cuda") is None
    assert session.cuda_devices() == 0 or not no_driver  # no libcuda here: no GPU, and no error
    loaded = []
    monkeypatch.setattr(ort, "preload_dlls", lambda **kw: loaded.append(kw))
    monkeypatch.setattr(session, "NVIDIA_DEVICES", tmp_path / "nvidia[0-9]*")
    monkeypatch.setattr(session, "cuda_devices", lambda: 1)  # onnxruntime-gpu lists CUDA either way
    assert session.choose_providers() == ["CPUExecutionProvider"]  # no device node: the driver is not asked
    (tmp_path / "nvidia0").touch()
    assert session.choose_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"] and loaded
    monkeypatch.setattr(session, "cuda_devices", lambda: 0)
    assert session.choose_providers() == ["CPUExecutionProvider"]
