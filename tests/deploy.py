"""The deployment files as the tests read them: the kustomize base's resources, its config file, its environment."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
#: Where the Deployment mounts the ConfigMap's file (GATEWAY_CONFIG).
CONFIG_PATH = "/etc/frontdesk/gateway.toml"
#: Published test data standing in for the Secret's values (never a real key).
API_KEY = "frontdesk-deploy-test-key-" + "0" * 16
SECRET_VALUES = {
    "api-key-ci-sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
    "metrics-token": "frontdesk-deploy-test-metrics-token",
}


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    with open(path) as file:
        return yaml.safe_load(file)


def resources() -> dict[str, dict[str, Any]]:
    """The base's resources by kind, read from the files its kustomization.yaml lists."""
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        document = load_yaml(KUBERNETES / name)
        found[document["kind"]] = document
    return found


def gateway_toml() -> str:
    """The config file the ConfigMap carries."""
    text: str = resources()["ConfigMap"]["data"]["gateway.toml"]
    return text


def container() -> dict[str, Any]:
    """The Deployment's gateway container."""
    pod = resources()["Deployment"]["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1, "the base runs one container per pod"
    spec: dict[str, Any] = pod["containers"][0]
    return spec


def deployment_environment(secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The variables the Deployment gives the gateway, with test values for the Secret's keys.

    A secretKeyRef marked optional is left out when ``secrets`` has no value for it, as the kubelet does.
    """
    secrets = SECRET_VALUES if secrets is None else secrets
    env: dict[str, str] = {}
    for entry in container().get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        reference = entry["valueFrom"]["secretKeyRef"]
        if reference["key"] in secrets:
            env[entry["name"]] = secrets[reference["key"]]
        elif not reference.get("optional", False):
            raise KeyError(f"the Deployment needs the Secret key {reference['key']!r}")
    return env
