"""docker/kubernetes/: every manifest valid against the Kubernetes schemas (kubernetes-validate bundles them, so
this runs offline), and the properties docs/operations.md promises: probes, limits, non-root, one beat."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.files import DOCKER

MANIFESTS = DOCKER / "kubernetes"
# The release validated against. The manifests use only APIs stable since 1.23 (apps/v1, batch/v1,
# autoscaling/v2, policy/v1), so an older or newer cluster reads them the same.
KUBERNETES_VERSION = "1.33"


def kustomization() -> dict:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def resources() -> list[tuple[Path, dict]]:
    return [
        (MANIFESTS / name, document)
        for name in kustomization()["resources"]
        for document in yaml.safe_load_all((MANIFESTS / name).read_text())
        if document
    ]


def by_kind(kind: str) -> dict[str, dict]:
    return {document["metadata"]["name"]: document for _, document in resources() if document["kind"] == kind}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def test_kustomization_lists_every_manifest_in_the_folder():
    listed = set(kustomization()["resources"])
    present = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.parametrize("path", sorted(kustomization()["resources"]))
def test_each_manifest_is_valid_against_the_kubernetes_schema(path):
    documents = [document for document in yaml.safe_load_all((MANIFESTS / path).read_text()) if document]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validation_rejects_a_misspelt_field():
    web = by_kind("Deployment")["imagegate-web"]
    container = pod_spec(web)["containers"][0]
    broken_container = {**container, "readinesProbe": container["readinessProbe"]}
    broken = {**web, "spec": {**web["spec"], "template": {"spec": {**pod_spec(web), "containers": [broken_container]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_web_probes_healthz_and_scales_with_an_autoscaler_and_a_disruption_budget():
    web = by_kind("Deployment")["imagegate-web"]
    container = pod_spec(web)["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
        host = {header["name"]: header["value"] for header in container[probe]["httpGet"]["httpHeaders"]}["Host"]
        allowed = by_kind("ConfigMap")["imagegate"]["data"]["ALLOWED_HOSTS"].split(",")
        assert host in allowed, f"{probe} sends Host {host}, which ALLOWED_HOSTS must list"
    hpa = by_kind("HorizontalPodAutoscaler")["imagegate-web"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "imagegate-web"}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = next(iter(by_kind("PodDisruptionBudget").values()))
    assert pdb["spec"]["selector"]["matchLabels"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    service = by_kind("Service")["imagegate-web"]
    assert service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()


def test_one_beat_never_two():
    beat = by_kind("Deployment")["imagegate-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate", "a rolling update would run two beats for a while"
    assert "beat" in pod_spec(beat)["containers"][0]["command"]


def test_a_migration_job_and_workloads_that_wait_for_it():
    job = by_kind("Job")["imagegate-migrate"]
    assert "migrate --noinput" in " ".join(pod_spec(job)["containers"][0]["command"])
    for name, workload in by_kind("Deployment").items():
        init = pod_spec(workload).get("initContainers", [])
        assert any("migrate --check" in " ".join(container["command"]) for container in init), name


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_every_container_is_non_root_read_only_and_bounded(kind):
    for name, workload in by_kind(kind).items():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a writable /tmp beside the read-only root"
            sources = {
                source["configMapRef"]["name"] if "configMapRef" in source else source["secretRef"]["name"]
                for source in container["envFrom"]
            }
            assert sources == {"imagegate"}, f"{where}: configuration from the ConfigMap and the Secret"


def test_production_is_on_and_the_secret_template_holds_no_real_secret():
    assert by_kind("ConfigMap")["imagegate"]["data"]["PRODUCTION"] == "true"
    secret = by_kind("Secret")["imagegate"]["stringData"]
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secret)
    assert secret["SECRET_KEY"] == "change-me"
