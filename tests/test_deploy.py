"""deploy/: the Kubernetes base valid against the schemas and consistent with the image; its config accepted; lint."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy import (CONFIG_PATH, KUBERNETES, ROOT, SECRET_VALUES, container, deployment_environment, gateway_toml,
                          load_yaml, resources)
from tests.fakes import free_port

CONTAINERFILE = ROOT / "deploy" / "Containerfile"
KINDS = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
# The oldest Kubernetes release the base is written for (autoscaling/v2 and policy/v1 are GA well before it)
# and the newest whose schemas kubernetes-validate ships.
VERSIONS = ("1.29", kubernetes_validate.latest_version())


def _image_env() -> dict[str, str]:
    """The ENV instruction of the Containerfile's last stage, as a mapping."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    last_stage = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _image_user() -> str:
    found: list[str] = re.findall(r"^USER (\S+)$", CONTAINERFILE.read_text(), re.MULTILINE)
    assert len(found) == 1
    return found[0]


def test_kustomization_lists_one_file_per_resource_and_every_file() -> None:
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert set(resources()) == KINDS
    images = {entry["name"] for entry in kustomization["images"]}
    assert images == {container()["image"]}, "the kustomization's images: must name the container's image"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(path.name for path in KUBERNETES.glob("*.yaml")
                                        if path.name != "kustomization.yaml"))
def test_resource_is_valid_against_the_kubernetes_schema(name: str, version: str) -> None:
    # strict: an unknown or misspelt field is an error, as `kubectl apply --validate=strict` makes it.
    kubernetes_validate.validate(load_yaml(KUBERNETES / name), version, strict=True)


@pytest.mark.parametrize(("what", "change"), [
    ("misspelt field", lambda pod: pod["containers"][0].update(livenesProbe={})),
    ("port as a string", lambda pod: pod["containers"][0]["ports"][0].update(containerPort="8080")),
    ("probe without a handler port", lambda pod: pod["containers"][0]["readinessProbe"]["httpGet"].pop("port")),
])
def test_schema_validation_refuses_a_broken_deployment(what: str, change: Any) -> None:
    deployment = copy.deepcopy(resources()["Deployment"])
    change(deployment["spec"]["template"]["spec"])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_resources_refer_to_each_other() -> None:
    found = resources()
    deployment, service = found["Deployment"], found["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert found["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2, "one pod can drain while another serves"
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports.keys()
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == found["ConfigMap"]["metadata"]["name"]


def test_deployment_follows_the_image_and_the_drain() -> None:
    """Port, user, writable paths and timings agree with the Containerfile and docs/operations.md."""
    image_env, spec = _image_env(), container()
    pod = resources()["Deployment"]["spec"]["template"]["spec"]
    env = deployment_environment()
    # The port the probes and the Service use is the one the image binds.
    assert {port["containerPort"] for port in spec["ports"]} == {int(image_env["GATEWAY_BIND"].rsplit(":", 1)[1])}
    assert image_env["GATEWAY_BIND"].startswith("0.0.0.0:")
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/livez"
    # The kubelet must not kill a pod in the middle of its drain: grace > preStop sleep + gunicorn's drain.
    command = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + int(env["GATEWAY_GRACEFUL_TIMEOUT"])
    # Non-root, and the uid the image runs as.
    security = spec["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == _image_user()
    # With a read-only root, the metrics directory (and tempfile's /tmp) must be on a writable mount.
    mounts = {mount["mountPath"]: mount["name"] for mount in spec["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert image_env["GATEWAY_METRICS_DIR"].startswith("/tmp/")
    assert env["GATEWAY_CONFIG"] == CONFIG_PATH and CONFIG_PATH.startswith(
        next(path for path, name in mounts.items() if name == "config") + "/")
    # One worker per requested core: gunicorn.conf.py would otherwise count the node's cores.
    assert int(env["GATEWAY_WORKERS"]) == int(spec["resources"]["requests"]["cpu"])


def _check(env: dict[str, str], toml: Path) -> subprocess.CompletedProcess[str]:
    """``python -m app check`` as the image's preflight runs it: production, the Deployment's variables."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    return subprocess.run([sys.executable, "-m", "app", "check"], cwd=ROOT, capture_output=True, text=True,
                          env={**base, "GATEWAY_ENV": _image_env()["GATEWAY_ENV"], **env, "GATEWAY_CONFIG": str(toml)},
                          timeout=60)


def test_configmap_file_with_the_deployment_environment_is_accepted(tmp_path: Path) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text(gateway_toml())
    result = _check(deployment_environment(), toml)
    assert result.returncode == 0, result.stderr
    assert "configuration ok (production," in result.stdout


def test_configmap_holds_no_secret_and_needs_the_secret_to_start(tmp_path: Path) -> None:
    text = gateway_toml()
    for word in ("key_sha256", "token", "secret", "password"):
        assert not re.search(rf"^\s*\w*{word}\w*\s*=", text, re.MULTILINE | re.IGNORECASE), word
    toml = tmp_path / "gateway.toml"
    toml.write_text(text)
    without_key = {key: value for key, value in SECRET_VALUES.items() if key != "api-key-ci-sha256"}
    with pytest.raises(KeyError, match="api-key-ci-sha256"):
        deployment_environment(without_key)
    env = deployment_environment(SECRET_VALUES)
    del env["GATEWAY_AUTH__API_KEYS__CONSUMERS__CI__KEY_SHA256"]
    result = _check(env, toml)
    assert result.returncode == 3
    assert "auth.api_keys.consumers.ci.key_sha256" in result.stderr


def _hadolint() -> str:
    return str(Path(sys.executable).parent / "hadolint")


def test_containerfile_passes_hadolint(tmp_path: Path) -> None:
    result = subprocess.run([_hadolint(), str(CONTAINERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter does find what it should: an unpinned base and unpinned packages.
    sloppy = tmp_path / "Containerfile"
    sloppy.write_text("FROM python:latest\nRUN pip install flask\nCMD gunicorn wsgi:app\n")
    result = subprocess.run([_hadolint(), str(sloppy)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))


COMPOSE = ROOT / "deploy" / "compose"


def _compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """A gateway service's environment as compose gives it: required variables from SECRET_VALUES, defaults kept."""
    required = {"FRONTDESK_CI_KEY_SHA256": SECRET_VALUES["api-key-ci-sha256"],
                "FRONTDESK_METRICS_TOKEN": SECRET_VALUES["metrics-token"]}

    def interpolate(value: str) -> str:
        found = re.fullmatch(r"\$\{(\w+)(:\?|:-)(.*)\}", value)
        if not found:
            return value
        name, operator, rest = found.groups()
        return required[name] if operator == ":?" else rest

    return {key: interpolate(str(value)) for key, value in service["environment"].items()}


def test_compose_runs_two_instances_of_the_image_behind_nginx_and_redis() -> None:
    compose = load_yaml(COMPOSE / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"frontdesk-1", "frontdesk-2", "redis", "nginx"}
    graceful = int(deployment_environment()["GATEWAY_GRACEFUL_TIMEOUT"])
    for name in ("frontdesk-1", "frontdesk-2"):
        service = services[name]
        assert (COMPOSE / service["build"]["context"]).resolve() == ROOT
        assert service["build"]["dockerfile"] == "deploy/Containerfile"
        assert service["read_only"] is True and [mount.split(":")[0] for mount in service["tmpfs"]] == ["/tmp"]
        assert int(service["stop_grace_period"].rstrip("s")) > graceful
        assert f"./gateway.toml:{CONFIG_PATH}:ro" in service["volumes"]
        # Secrets are required from the caller's environment, never written down here.
        for key in ("GATEWAY_AUTH__API_KEYS__CONSUMERS__CI__KEY_SHA256", "GATEWAY_METRICS__TOKEN"):
            assert re.fullmatch(r"\$\{\w+:\?.+\}", service["environment"][key])
    port = _image_env()["GATEWAY_BIND"].rsplit(":", 1)[1]
    upstream = re.search(r"upstream frontdesk \{(.*?)\}", (COMPOSE / "nginx.conf").read_text(), re.DOTALL)
    assert upstream is not None
    servers = set(re.findall(r"^\s*server (\S+?)(?:\s|;)", upstream.group(1), re.MULTILINE))
    assert servers == {f"frontdesk-1:{port}", f"frontdesk-2:{port}"}
    published = services["nginx"]["ports"][0].rsplit(":", 1)[1]
    assert re.search(rf"^\s*listen {published};", (COMPOSE / "nginx.conf").read_text(), re.MULTILINE)


def test_compose_gateway_file_is_accepted_and_shares_redis(tmp_path: Path) -> None:
    text = (COMPOSE / "gateway.toml").read_text()
    assert 'storage_uri = "redis://redis:6379/0"' in text and 'shared_uri = "redis://redis:6379/1"' in text
    toml = tmp_path / "gateway.toml"
    toml.write_text(text)
    env = _compose_environment(load_yaml(COMPOSE / "compose.yaml")["services"]["frontdesk-1"])
    result = _check(env, toml)
    assert result.returncode == 0, result.stderr


def test_compose_nginx_conf_is_valid(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx not found (apt-get install nginx)")
        pytest.skip("nginx not found (apt-get install nginx)")
    # nginx -t resolves the upstream names, which exist only on compose's network: check a copy on loopback.
    conf = (COMPOSE / "nginx.conf").read_text()
    conf = re.sub(r"frontdesk-\d:(\d+)", r"127.0.0.1:\1", conf)
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{free_port()};")
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(path), "-e", str(tmp_path / "error.log"),
                             "-g", f"pid {tmp_path / 'nginx.pid'};"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
