"""The compose stack and the image, checked without a Docker engine (none here, no compose plugin).

docker-compose.yml is validated against the Compose Specification's JSON schema (tests/data/compose),
then read the way ``docker compose --profile NAME`` selects services: a profile's services must be
self-contained, the cpu profile must ask for no GPU, every long-running service must be health-checked
and every one-shot must gate something. The Dockerfile is read for layer order, user and install kind.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import REPO_ROOT

SCHEMA = REPO_ROOT / "tests" / "data" / "compose" / "compose-spec.json"
OCRQ_IMAGES = ("ocrq:latest", "ocrq-gpu:latest", "ocrq-hf:latest")
REQUIRED_IN_ENV = re.compile(r"\$\{(\w+):\?")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def services_in(compose: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """What ``docker compose --profile PROFILE up`` starts (a service without profiles always starts)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if not service.get("profiles") or profile in service["profiles"]
    }


def requests_gpu(service: dict[str, Any]) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    gpu_devices = [d for d in devices if "gpu" in d.get("capabilities", []) or d.get("driver") == "nvidia"]
    return bool(gpu_devices) or "gpus" in service or service.get("runtime") == "nvidia"


def test_compose_file_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(compose))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_schema_check_can_fail(compose: dict[str, Any]) -> None:
    """The validator really rejects a misspelt key (else the test above proves nothing)."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"
    schema = json.loads(SCHEMA.read_text())
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


def test_every_service_belongs_to_a_profile_so_a_bare_up_starts_nothing(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("profiles"), name


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_each_profile_is_a_whole_stack(compose: dict[str, Any], profile: str) -> None:
    active = services_in(compose, profile)
    assert {"redis", "postgres", "migrate", "api", "beat", "flower"} <= set(active)
    for name, service in active.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in active, f"{profile}: {name} waits on {dependency}, which is not started"


def test_cpu_profile_asks_for_no_gpu_and_ocrs_with_tesseract(compose: dict[str, Any]) -> None:
    active = services_in(compose, "cpu")
    assert [name for name, service in active.items() if requests_gpu(service)] == []
    assert "vllm" not in active
    workers = [s for s in active.values() if s.get("command", [])[:2] == ["ocrq", "worker"]]
    roles = [(s, s["command"][s["command"].index("--role") + 1]) for s in workers]
    page_workers = [service for service, role in roles if role in ("all", "gpu")]
    assert page_workers and all(s["environment"]["OCRQ_ENGINES"] == "tesseract" for s in page_workers)


def test_gpu_profile_chains_vllm_transformers_tesseract_from_the_host_cache(compose: dict[str, Any]) -> None:
    active = services_in(compose, "gpu")
    worker = active["worker-gpu"]
    assert worker["environment"]["OCRQ_ENGINES"] == "vllm,transformers,tesseract"
    assert "transformers" in worker["build"]["args"]["OCRQ_EXTRAS"].split(",")
    assert requests_gpu(worker) and requests_gpu(active["vllm"])
    host_cache = "${HF_HOME:-~/.cache/huggingface}:"
    for name in ("vllm", "worker-gpu", "weights"):
        assert any(volume.startswith(host_cache) for volume in active[name]["volumes"]), name
    assert active["vllm"]["depends_on"]["weights"]["condition"] == "service_completed_successfully"
    assert active["weights"]["command"] == ["ocrq", "models", "--check", "dots.ocr"]
    assert "hf-cache" not in (compose.get("volumes") or {}), "a named volume hides the host's cache"


def test_every_service_is_health_checked_or_gated(compose: dict[str, Any]) -> None:
    """Long-running services have a healthcheck; a one-shot (restart "no") gates another service."""
    services = compose["services"]
    gated = {
        dependency
        for service in services.values()
        for dependency, rule in (service.get("depends_on") or {}).items()
        if rule["condition"] == "service_completed_successfully"
    }
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        assert (name in gated) if one_shot else ("healthcheck" in service or service.get("depends_on")), name
        if not one_shot and "healthcheck" not in service:
            conditions = {rule["condition"] for rule in service["depends_on"].values()}
            assert conditions - {"service_started"}, name


def test_flower_and_api_listen_on_loopback_and_flower_has_no_default_password(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert services["api"]["ports"] == ["${OCRQ_API_BIND:-127.0.0.1}:8080:8080"]
    auth = services["flower"]["environment"]["OCRQ_FLOWER_BASIC_AUTH"]
    assert auth.startswith("${OCRQ_FLOWER_BASIC_AUTH:?"), auth
    for service in services.values():
        for port in service.get("ports", []):
            assert len(port.split(":")) >= 3, f"{port} would be published on every interface"


def test_ocrq_containers_run_as_the_mapped_user(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("image") in OCRQ_IMAGES:
            assert service["user"] == "${USERMAP_UID:-1000}:${USERMAP_GID:-1000}", name


def test_every_required_variable_is_in_env_example() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    required = set(REQUIRED_IN_ENV.findall(text))
    assert {"POSTGRES_PASSWORD", "OCRQ_FLOWER_BASIC_AUTH"} <= required
    example = (REPO_ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*(\w+)=", example, re.MULTILINE))
    assert required <= named, required - named
    assert "change-me" not in text and "ocrq:ocrq@" not in text


def test_dockerfile_installs_dependencies_before_the_code_as_a_wheel_for_a_non_root_user() -> None:
    lines = [line.strip() for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()]
    copy_all = next(i for i, line in enumerate(lines) if re.match(r"COPY \. ", line))
    deps = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    assert deps < copy_all, "dependencies must be a layer of their own, before the code"
    assert not any("pip install" in line and " -e " in line for line in lines), "editable install"
    assert any("pip wheel" in line for line in lines) and any("/wheels/*.whl" in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("ARG OCRQ_EXTRAS") for line in lines)


def test_image_requirements_come_from_pyproject_with_the_extra() -> None:
    script = REPO_ROOT / "deploy" / "requirements_from_pyproject.py"
    pyproject = str(REPO_ROOT / "pyproject.toml")
    plain = subprocess.run([sys.executable, script, pyproject, ""], capture_output=True, text=True)
    gpu = subprocess.run([sys.executable, script, pyproject, "transformers"], capture_output=True, text=True)
    assert plain.returncode == 0 and gpu.returncode == 0, plain.stderr + gpu.stderr
    assert "fastapi" in plain.stdout and "transformers" not in plain.stdout
    assert any(line.startswith("transformers") for line in gpu.stdout.splitlines())
    wrong = subprocess.run([sys.executable, script, pyproject, "nope"], capture_output=True, text=True)
    assert wrong.returncode != 0 and "unknown extra" in wrong.stderr


def test_dockerignore_keeps_venvs_git_results_and_secrets_out() -> None:
    patterns = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".venv-*", "results/", ".env", "**/__pycache__"} <= patterns


def _ocrq(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    ocrq = Path(sys.executable).parent / "ocrq"
    return subprocess.run([str(ocrq), *args], capture_output=True, text=True, env=env, timeout=120)


def test_weights_check_names_what_is_missing_then_passes(tmp_path: Path) -> None:
    """What the compose `weights` step and the GPU worker's healthcheck run."""
    from tests.test_hf_cache import COMMIT_A, add_snapshot, sharded_files

    env = {"PATH": "/usr/bin:/bin", "HF_HUB_CACHE": str(tmp_path / "hub"), "HOME": str(tmp_path)}
    missing = _ocrq(["models", "--check", "dots.ocr"], env)
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "huggingface-cli download rednote-hilab/dots.ocr" in missing.stderr
    add_snapshot(tmp_path / "hub", "rednote-hilab/dots.ocr", COMMIT_A, sharded_files())
    present = _ocrq(["models", "--check", "dots.ocr"], env)
    assert present.returncode == 0, present.stderr
    assert "dots.ocr: complete" in present.stdout
    unknown = _ocrq(["models", "--check", "nope"], env)
    assert unknown.returncode == 2 and "no model 'nope'" in unknown.stderr
