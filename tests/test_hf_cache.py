"""The Hugging Face cache as ocrq judges it, on a synthetic cache in the real hub layout.

``models--org--name/{blobs,refs,snapshots}`` with content-addressed blobs and relative symlinks,
as huggingface_hub writes them: one complete model, one whose shard index lists a shard that is
not there, one with a blob still ``.incomplete``, one with a broken symlink. No torch needed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocrq.api.cli.hf_cache import cache_status_for, hf_cache_command
from ocrq.errors import EngineUnavailable
from ocrq.worker.engines.hf.engine import model_location
from ocrq.worker.models.hf_cache import ModelNotCached, hub_cache_dir, local_model_dir, scan_hub_cache
from ocrq.worker.models.registry import ModelSpec, bundled_registry

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes], ref: str = "main") -> Path:
    """Write files the way huggingface_hub does: blob by sha256, snapshot entries as relative links."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


def sharded_files(shards: tuple[str, ...] = SHARDS) -> dict[str, bytes]:
    index = {"metadata": {}, "weight_map": {f"layer.{i}": shard for i, shard in enumerate(SHARDS)}}
    files = {
        "config.json": b'{"model_type": "qwen2_vl"}',
        "model.safetensors.index.json": json.dumps(index).encode(),
    }
    return files | {shard: shard.encode() * 100 for shard in shards}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    add_snapshot(root, "org/complete", COMMIT_A, sharded_files())
    add_snapshot(root, "org/missing-shard", COMMIT_A, sharded_files(SHARDS[:1]))
    add_snapshot(root, "org/downloading", COMMIT_B, {"config.json": b"{}", "model.safetensors": b"w" * 10})
    (root / "models--org--downloading" / "blobs" / ("c" * 64 + ".incomplete")).write_bytes(b"x" * 500)
    broken = add_snapshot(root, "org/broken", COMMIT_A, {"config.json": b"{}"})
    (broken / "model.safetensors").symlink_to("../../blobs/" + "d" * 64)
    return root


def spec_for(repo_id: str) -> ModelSpec:
    return (
        bundled_registry()
        .get("qwen2-vl-2b")
        .model_copy(update={"key": repo_id.split("/")[1], "hf_repo": repo_id})
    )


def test_scan_judges_each_repo_and_counts_its_bytes(cache: Path) -> None:
    scan = scan_hub_cache(cache)
    states = {repo_id: repo.state for (_kind, repo_id), repo in scan.repos.items()}
    assert states == {
        "org/complete": "complete",
        "org/missing-shard": "incomplete",
        "org/downloading": "incomplete",
        "org/broken": "corrupted",
    }
    complete = scan.model("org/complete")
    assert complete is not None
    blobs = sum(path.stat().st_size for path in (complete.path / "blobs").iterdir())
    assert complete.size_bytes == blobs and complete.snapshots[0].refs == ("main",)
    downloading = scan.model("org/downloading")
    assert downloading is not None and downloading.incomplete_blobs == ("c" * 64 + ".incomplete",)
    assert downloading.size_bytes >= 500  # the unfinished blob takes disk space too


def test_registry_rows_say_what_is_missing(cache: Path) -> None:
    specs = [
        spec_for(repo) for repo in ("org/complete", "org/missing-shard", "org/downloading", "org/absent")
    ]
    rows = {row.repo_id: row for row in cache_status_for(specs, cache)}
    assert rows["org/complete"].state == "complete" and rows["org/complete"].problems == ()
    assert rows["org/complete"].snapshot == cache / "models--org--complete" / "snapshots" / COMMIT_A
    assert rows["org/missing-shard"].state == "incomplete"
    assert rows["org/missing-shard"].problems == (f"missing 1 of 2 weight shards: {SHARDS[1]}",)
    assert rows["org/downloading"].problems == ("c" * 64 + ".incomplete still downloading",)
    assert rows["org/absent"].state == "missing" and rows["org/absent"].size_bytes == 0


def test_only_a_complete_snapshot_is_handed_to_the_engine(cache: Path) -> None:
    assert local_model_dir("org/complete", cache_dir=cache).name == COMMIT_A
    with pytest.raises(ModelNotCached, match="missing 1 of 2 weight shards") as incomplete:
        local_model_dir("org/missing-shard", cache_dir=cache)
    assert isinstance(incomplete.value, EngineUnavailable)  # the chain skips the engine, no crash
    with pytest.raises(ModelNotCached, match="still downloading"):
        local_model_dir("org/downloading", cache_dir=cache)
    with pytest.raises(ModelNotCached, match="corrupted"):
        local_model_dir("org/broken", cache_dir=cache)
    with pytest.raises(ModelNotCached, match="never downloads"):
        local_model_dir("org/absent", cache_dir=cache)


def test_a_named_directory_is_checked_like_a_snapshot(tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelNotCached, match="no weight files"):
        model_location(spec_for("org/x"), folder)
    (folder / "model.safetensors").write_bytes(b"w")
    assert model_location(spec_for("org/x"), folder) == folder


def test_cache_location_honours_hf_hub_cache_then_hf_home(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    assert hub_cache_dir() == cache  # HF_HOME/hub
    assert scan_hub_cache().model("org/complete") is not None
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"
    assert scan_hub_cache().repos == {}  # an absent cache is empty, not an error


def test_cli_lists_everything_in_the_cache(cache: Path) -> None:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(hf_cache_command, ["--all", "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert "4 repos" in result.output
    for repo_id in ("org/complete", "org/missing-shard", "org/downloading", "org/broken"):
        assert repo_id in result.output
    assert "missing 1 of 2 weight shards" in result.output and "still downloading" in result.output


def test_cli_shows_registry_models_by_default(cache: Path) -> None:
    add_snapshot(cache, "Qwen/Qwen2-VL-2B-Instruct", COMMIT_A, sharded_files())
    result = CliRunner(env={"COLUMNS": "250"}).invoke(hf_cache_command, ["--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "complete" in lines["qwen2-vl-2b"] and "missing" in lines["dots.ocr"]


def test_ocrq_models_says_which_registry_models_are_cached(cache: Path) -> None:
    from ocrq.api.cli.models import models_command

    add_snapshot(cache, "Qwen/Qwen2-VL-2B-Instruct", COMMIT_A, sharded_files())
    env = {"COLUMNS": "400", "HF_HUB_CACHE": str(cache)}
    result = CliRunner(env=env).invoke(models_command, [])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "complete" in lines["qwen2-vl-2b"] and "missing" in lines["dots.ocr"]
    listing = CliRunner(env=env).invoke(models_command, ["--cache"])
    assert "org/missing-shard" in listing.output and "missing 1 of 2 weight shards" in listing.output
