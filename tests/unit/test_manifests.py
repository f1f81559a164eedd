"""The deployment files: every Kubernetes manifest against the Kubernetes JSON schemas (kubernetes-validate's
bundled copies, strict: unknown fields are errors), the KEDA ScaledObject against its CRD schema
(tests/schemas/), and what ties the files together: names, labels, ports, the compose file's paths and
the dashboard's metric names against the metrics the code defines. All offline."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from common.queue import BATCH_QUEUE, INTERACTIVE_QUEUE
from common.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = ROOT / "tests" / "schemas" / "keda-scaledobject-v1alpha1.json"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "backdrop.json"
API_DOCKERFILE = ROOT / "deploy" / "api.Dockerfile"

# The oldest Kubernetes the manifests are meant for (autoscaling/v2 and policy/v1 are GA well before it)
# and the newest one the package bundles.
K8S_VERSIONS = ["1.29", latest_version()]


def manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in manifest_files():
        for doc in documents(path):
            yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


DOCS = dict(all_documents())


def find(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in DOCS.values() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} definitions"
    return found[0]


def is_keda(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].startswith("keda.sh/")


def keda_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(KEDA_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def k8s_errors(doc: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    return None


# --- schemas ---------------------------------------------------------------------------------------


def test_the_manifests_are_found() -> None:
    kinds = {doc["kind"] for doc in DOCS.values()}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "StatefulSet",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ScaledObject",
    } <= kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", [name for name, doc in DOCS.items() if not is_keda(doc)])
def test_manifest_validates_against_the_kubernetes_schema(name: str, version: str) -> None:
    assert k8s_errors(DOCS[name], version) is None


def test_the_kubernetes_validation_refuses_an_unknown_field_and_a_wrong_type() -> None:
    deployment = json.loads(json.dumps(find("Deployment", "backdrop-worker")))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert k8s_errors(deployment, latest_version()) is not None
    hpa = json.loads(json.dumps(find("HorizontalPodAutoscaler", "backdrop-api")))
    hpa["spec"]["minReplicas"] = "two"
    assert k8s_errors(hpa, latest_version()) is not None


@pytest.mark.parametrize("name", [name for name, doc in DOCS.items() if is_keda(doc)])
def test_scaled_object_validates_against_the_keda_crd_schema(name: str) -> None:
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in keda_validator().iter_errors(DOCS[name])]
    assert errors == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda s: s["spec"].pop("scaleTargetRef"), "no scale target"),
        (lambda s: s["spec"].update(maxReplicas=4), "the HPA's field name, not KEDA's"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].pop("listName"), "redis trigger without a list"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].update(listLength=8), "metadata values are strings"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].update(list="interactive"), "unknown redis parameter"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].pop("address"), "redis trigger without an address"),
    ],
)
def test_the_keda_schema_refuses_a_broken_scaled_object(change: Any, why: str) -> None:
    scaled = json.loads(json.dumps(find("ScaledObject", "backdrop-worker")))
    change(scaled)
    assert not keda_validator().is_valid(scaled), why


# --- how the manifests fit together ----------------------------------------------------------------


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def container_ports(deployment: dict[str, Any]) -> set[int]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return {p["containerPort"] for c in containers for p in c.get("ports", [])}


def test_every_manifest_is_in_the_namespace() -> None:
    for name, doc in DOCS.items():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "backdrop", name


def test_the_scaled_object_scales_the_workers_on_both_queues_in_redis() -> None:
    scaled = find("ScaledObject", "backdrop-worker")
    target = scaled["spec"]["scaleTargetRef"]
    worker = find(target["kind"], target["name"])
    assert target["apiVersion"] == worker["apiVersion"]
    spec = scaled["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert sorted(t["metadata"]["listName"] for t in triggers) == sorted([INTERACTIVE_QUEUE, BATCH_QUEUE])
    redis_service = find("Service", "redis")
    port = redis_service["spec"]["ports"][0]["port"]
    expected_address = f"redis.{redis_service['metadata']['namespace']}.svc.cluster.local:{port}"
    config = find("ConfigMap", "backdrop-config")["data"]
    database = config["BACKDROP_REDIS_URL"].rsplit("/", 1)[1]
    for trigger in triggers:
        assert trigger["metadata"]["address"] == expected_address
        assert trigger["metadata"]["databaseIndex"] == database
        assert int(trigger["metadata"]["listLength"]) >= 1


def test_autoscaled_deployments_leave_their_replica_count_to_the_autoscaler() -> None:
    assert "replicas" not in find("Deployment", "backdrop-worker")["spec"]
    assert "replicas" not in find("Deployment", "backdrop-api")["spec"]


def test_the_api_hpa_scales_the_api_on_cpu_of_a_request_that_is_set() -> None:
    hpa = find("HorizontalPodAutoscaler", "backdrop-api")
    target = hpa["spec"]["scaleTargetRef"]
    api = find(target["kind"], target["name"])
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert container(api, "api")["resources"]["requests"]["cpu"]


@pytest.mark.parametrize("deployment", ["backdrop-api", "backdrop-worker"])
def test_a_disruption_budget_selects_each_deployments_pods(deployment: str) -> None:
    labels = pod_labels(find("Deployment", deployment))
    budgets = [
        doc
        for doc in DOCS.values()
        if doc["kind"] == "PodDisruptionBudget" and doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(budgets) == 1
    spec = budgets[0]["spec"]
    # A minAvailable as high as the fewest replicas would block every node drain.
    fewest = {"backdrop-api": find("HorizontalPodAutoscaler", "backdrop-api")["spec"]["minReplicas"]}.get(deployment, 1)
    assert spec.get("maxUnavailable", 0) >= 1 or spec.get("minAvailable", fewest) < fewest


def test_every_container_has_cpu_and_memory_requests_and_a_memory_limit() -> None:
    for name, doc in DOCS.items():
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):
            resources = c["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), f"{name} {c['name']}"
            assert "memory" in resources["limits"], f"{name} {c['name']}"


@pytest.mark.parametrize("deployment", ["backdrop-api", "backdrop-worker"])
def test_prometheus_annotations_point_at_a_port_the_pod_serves(deployment: str) -> None:
    doc = find("Deployment", deployment)
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) in container_ports(doc)


def test_the_worker_serves_metrics_on_the_port_it_declares() -> None:
    worker = find("Deployment", "backdrop-worker")
    env = {e["name"]: e["value"] for e in container(worker, "worker")["env"]}
    port = int(env.get("BACKDROP_WORKER_METRICS_PORT", Settings.model_fields["worker_metrics_port"].default))
    assert port == Settings.model_fields["worker_metrics_port"].default
    assert {p["name"]: p["containerPort"] for p in container(worker, "worker")["ports"]}["metrics"] == port


def dockerfile_multiproc_dir() -> str:
    match = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", API_DOCKERFILE.read_text())
    assert match, "api.Dockerfile sets no PROMETHEUS_MULTIPROC_DIR"
    return match.group(1)


def test_the_api_pod_has_an_empty_writable_multiprocess_metrics_directory() -> None:
    api = find("Deployment", "backdrop-api")
    c = container(api, "api")
    directory = {e["name"]: e["value"] for e in c["env"]}["PROMETHEUS_MULTIPROC_DIR"]
    assert directory == dockerfile_multiproc_dir()
    [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == directory]
    assert not mount.get("readOnly", False)
    volumes = {v["name"]: v for v in api["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]


def test_the_api_image_creates_the_directory_for_its_user_and_empties_it_at_start() -> None:
    text = API_DOCKERFILE.read_text()
    directory = dockerfile_multiproc_dir()
    assert re.search(r"install -d -o backdrop -g backdrop [^\n]*\"\$PROMETHEUS_MULTIPROC_DIR\"", text)
    assert re.search(r"USER 10001", text)
    cmd = json.loads(text[text.rindex("\nCMD ") + 5 :].splitlines()[0])
    assert cmd[:2] == ["sh", "-c"]
    assert 'find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete' in cmd[2]
    assert "exec gunicorn" in cmd[2] and "--workers 2" in cmd[2]
    assert directory.startswith("/")


# --- docker-compose.yml ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_files_and_dependencies_exist() -> None:
    services = compose()["services"]
    named_volumes = set(compose().get("volumes", {}))
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} -> {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in named_volumes, f"{name}: {source}"


def test_compose_publishes_the_worker_metrics_ports_on_distinct_host_ports() -> None:
    services = compose()["services"]
    host_ports = []
    for name in ("worker-gpu", "worker-cpu"):
        env = services[name]["environment"]
        port = env["BACKDROP_WORKER_METRICS_PORT"]
        [mapping] = services[name]["ports"]
        host, inside = mapping.split(":")
        assert inside == port, name
        host_ports.append(host)
    assert len(set(host_ports)) == 2


def test_monitoring_profile_runs_prometheus_and_grafana_with_the_dashboard() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    # The default `docker compose up` starts no monitoring.
    assert [n for n, s in services.items() if "monitoring" in s.get("profiles", [])] == ["prometheus", "grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"] if v.startswith("."))
    assert mounts["./deploy/grafana/backdrop.json"].startswith("/var/lib/grafana/dashboards/")
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/backdrop.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = datasource["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"]
    assert any(v.endswith(":/etc/prometheus/prometheus.yml:ro") for v in services["prometheus"]["volumes"])


def test_prometheus_scrapes_the_api_and_every_worker_of_the_compose_file() -> None:
    services = compose()["services"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
        if job.get("metrics_path", "/metrics") == "/metrics"
    }
    workers = ("worker-gpu", "worker-cpu")
    expected = {f"{name}:{services[name]['environment']['BACKDROP_WORKER_METRICS_PORT']}" for name in workers}
    api_port = services["api"]["ports"][0].split(":")[1].split()[0]
    expected.add(f"api:{api_port}")
    assert targets == expected


# --- the Grafana dashboard -------------------------------------------------------------------------

METRIC_NAME = re.compile(r"\bbackdrop_[a-z0-9_]+\b")


class _Pipeline:
    """Enough of a Redis pipeline for the queue-depth collector: every list is empty."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def llen(self, _: str) -> None:
        self.calls += 1

    def execute(self) -> list[int]:
        return [0] * self.calls


class _Redis:
    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline()


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}


def exported_series(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The series names the API's and the workers' /metrics can carry (sample name -> family), read from
    what the two metrics modules register and from the API's scrape registry."""
    import api.metrics
    import worker.metrics  # noqa: F401  (registers the workers' metrics in the default registry)

    monkeypatch.delenv(api.metrics.MULTIPROCESS_ENV, raising=False)
    series = {}
    for family in api.metrics.scrape_registry(_Redis()).collect():
        if not family.name.startswith("backdrop_"):
            continue
        for suffix in SUFFIXES[family.type]:
            series[family.name + suffix] = family.name
    return series


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def test_the_code_registers_the_metrics_the_readme_names(monkeypatch: pytest.MonkeyPatch) -> None:
    series = exported_series(monkeypatch)
    for name in (
        "backdrop_api_requests_total",
        "backdrop_api_request_seconds_bucket",
        "backdrop_jobs_accepted_total",
        "backdrop_queue_depth",
        "backdrop_jobs_succeeded_total",
        "backdrop_jobs_failed_total",
        "backdrop_job_latency_seconds_bucket",
        "backdrop_job_stage_seconds_bucket",
        "backdrop_batch_size_bucket",
        "backdrop_forward_seconds_bucket",
        "backdrop_batches_total",
        "backdrop_worker_jobs_in_flight",
        "backdrop_worker_model_info",
    ):
        assert name in series


def test_every_dashboard_query_names_only_metrics_the_code_defines(monkeypatch: pytest.MonkeyPatch) -> None:
    series = exported_series(monkeypatch)
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        names = METRIC_NAME.findall(expr)
        assert names, expr
        unknown = [name for name in names if name not in series]
        assert unknown == [], expr


def test_the_dashboard_shows_every_metric_the_code_defines(monkeypatch: pytest.MonkeyPatch) -> None:
    series = exported_series(monkeypatch)
    shown = {series[name] for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    assert shown == set(series.values())


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            # Counters are shown as rates: a raw counter total is meaningless across restarts.
            for name in METRIC_NAME.findall(target["expr"]):
                if name.endswith(("_total", "_bucket", "_sum", "_count")):
                    assert re.search(rf"rate\({name}(\{{[^}}]*\}})?\[", target["expr"]), target["expr"]
