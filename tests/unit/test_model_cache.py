"""The embedded-model cache: conversion once, atomically, never trusting a half-written folder."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dynasor_sgl.launch import model
from dynasor_sgl.launch.model import ModelError, ensure_embedded_model, validate_model_path

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DYNASOR_SGL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_convert(calls: list[Path], delay: float = 0.0):  # type: ignore[no-untyped-def]
    def convert(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        time.sleep(delay)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")

    return convert


def test_converts_once_then_reuses(private_cache: Path) -> None:
    calls: list[Path] = []
    messages: list[str] = []
    first = ensure_embedded_model(messages.append, convert=fake_convert(calls))
    assert first == model.embedded_model_dir() and first.is_relative_to(private_cache)
    assert (first / "model.safetensors").read_bytes() == b"weights"
    assert calls == [model.embedded_gguf_path()] and calls[0].name == model.EMBEDDED_GGUF
    assert any("Preparing the embedded model" in m for m in messages)
    assert ensure_embedded_model(messages.append, convert=fake_convert(calls)) == first
    assert len(calls) == 1


def test_a_conversion_killed_midway_leaves_nothing_trusted(private_cache: Path) -> None:
    def dies(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_embedded_model(convert=dies)
    target = model.embedded_model_dir()
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if ".tmp-" in p.name]
    calls: list[Path] = []
    assert ensure_embedded_model(convert=fake_convert(calls)) == target and len(calls) == 1


def test_a_folder_without_the_completion_marker_is_rebuilt() -> None:
    target = model.embedded_model_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # looks like a model, but never finished
    calls: list[Path] = []
    ensure_embedded_model(convert=fake_convert(calls))
    assert len(calls) == 1 and model.is_complete(target)


def test_concurrent_callers_convert_once() -> None:
    calls: list[Path] = []
    convert = fake_convert(calls, delay=0.3)
    threads = [
        threading.Thread(target=ensure_embedded_model, kwargs={"convert": convert})
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_validate_model_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        validate_model_path(tmp_path / "nope")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ModelError, match="is not a folder"):
        validate_model_path(f)
    d = tmp_path / "m"
    d.mkdir()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        validate_model_path(d)
    (d / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="has no weight files"):
        validate_model_path(d)
    (d / "model.safetensors").write_bytes(b"")
    assert validate_model_path(d) == d.resolve()


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DYNASOR_SGL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model.cache_dir() == tmp_path / "dynasor-sgl"
