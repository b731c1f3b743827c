"""deploy/kubernetes/ without a cluster: every manifest against the Kubernetes schemas bundled with
kubernetes-validate (strict: unknown fields refused), the kustomize builds (the subset of kustomize these files
use, tests/support/kustomize.py), and what the manifests promise (probes, security, the generated Envoy config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from authz.config import load_config
from tests.support import kustomize
from tests.support.envoy_validate import failures, validate_all

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy/kubernetes"
KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes version the manifests are validated against (native gRPC probes GA since 1.27, the preStop
``sleep`` action on by default since 1.30); kubernetes-validate also checks its newest bundled schema."""


def manifests() -> list[Path]:
    """Every file of deploy/kubernetes/ that is a Kubernetes object (not kustomize's own files or configs)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and "config" not in p.parts)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def validate(doc: dict[str, Any], version: str = KUBERNETES_VERSION) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    paths = manifests()
    kinds = sorted(d["kind"] for p in paths for d in documents(p))
    assert kinds == ["Deployment", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service",
                     "Service", "Service", "StatefulSet"]
    newest = kubernetes_validate.utils.latest_version()
    for path in paths:
        for doc in documents(path):
            validate(doc)
            validate(doc, newest)
    broken = documents(K8S / "base/authz-deployment.yaml")[0]
    broken["spec"]["replicaz"] = 3
    with pytest.raises(kubernetes_validate.ValidationError, match="replicaz"):
        validate(broken)


def test_kustomizations_list_files_that_exist_and_every_manifest_is_used() -> None:
    used = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        for entry in [*doc.get("resources", []), *doc.get("components", [])]:
            target = (kustomization.parent / entry).resolve()
            assert target.exists(), f"{kustomization}: {entry}"
            used.add(target)
        for generator in doc.get("configMapGenerator", []):
            for item in generator["files"]:
                target = (kustomization.parent / item.split("=", 1)[-1]).resolve()
                assert target.is_file(), f"{kustomization}: {item}"
                used.add(target)
    assert set(manifests()) <= used


def test_kustomize_builds_validate() -> None:
    """The builds of base and overlay (tests/support/kustomize.py: the kustomize features these files use; CI has
    no kubectl), each object against the schemas."""
    for directory in (K8S / "base", K8S / "overlays/example"):
        docs = kustomize.build(directory)
        for doc in docs:
            validate(doc)
        names = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert {("Deployment", "authz"), ("Service", "authz"), ("ConfigMap", "authz-config"),
                ("ConfigMap", "envoy-config"), ("Deployment", "envoy")} <= names
    overlay = kustomize.build(K8S / "overlays/example")
    assert {d["metadata"].get("namespace") for d in overlay} == {"authz"}
    assert ("StatefulSet", "redis") in {(d["kind"], d["metadata"]["name"]) for d in overlay}
    [deployment] = [d for d in overlay if d["kind"] == "Deployment" and d["metadata"]["name"] == "authz"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/platform/authz:0.1.0"


def test_authz_deployment_runs_three_hardened_replicas_with_grpc_probes() -> None:
    [deployment] = documents(K8S / "base/authz-deployment.yaml")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"] == {"port": 9191}
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["AUTHZ_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "authz-admin", "key": "token"}
    assert env["AUTHZ_CONFIG"]["value"] == "/etc/authz/authz.yaml"
    assert {v["name"]: v.get("configMap", {}).get("name") for v in pod["volumes"]} == {
        "config": "authz-config", "tmp": None}
    [service] = documents(K8S / "base/authz-service.yaml")
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS record per pod for Envoy's STRICT_DNS
    assert service["metadata"]["name"] == "authz"
    [pdb] = documents(K8S / "base/authz-pdb.yaml")
    [hpa] = documents(K8S / "base/authz-hpa.yaml")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["scaleTargetRef"]["name"]) == (3, "authz")
    [redis] = documents(K8S / "components/redis/redis-statefulset.yaml")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "always"


def test_the_configs_of_the_base_load_and_envoys_config_is_generated_from_them_and_validates() -> None:
    settings = load_config(K8S / "base/config/authz.yaml", env={})
    assert settings.server.workers == 1
    assert settings.server.listen == "0.0.0.0:9191"
    assert (settings.server.http_listen, settings.server.http_route_headers) == ("0.0.0.0:9192", True)
    envoy = K8S / "base/config/envoy.yaml"
    # HTTP ext_authz mode, the default of the manifests: Envoy calls every pod's server.http_listen.
    assert envoy.read_text().startswith(
        "# Generated by `authz envoy-config --config deploy/kubernetes/base/config/authz.yaml --target kubernetes "
        "--authz-mode http")
    config = yaml.safe_load(envoy.read_text())
    [authz] = [c for c in config["static_resources"]["clusters"] if c["name"] == "authz_http"]
    assert authz["type"] == "STRICT_DNS"
    assert authz["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "authz", "port_value": 9192}
    [pod] = documents(K8S / "base/authz-deployment.yaml")
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["template"]["spec"]["containers"][0]["ports"]}
    [service] = documents(K8S / "base/authz-service.yaml")
    assert (ports["http"], {p["name"]: p["port"] for p in service["spec"]["ports"]}["http"]) == (9192, 9192)
    [deployment] = documents(K8S / "base/envoy-deployment.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "envoyproxy/envoy:v1.40.0"
    assert container["ports"][0]["containerPort"] == config["static_resources"]["listeners"][0]["address"][
        "socket_address"]["port_value"]
    assert failures(validate_all([envoy])) == {}
