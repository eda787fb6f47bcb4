"""k8s/: the manifests load, the KubeRay resources carry what a study needs, nothing is exposed
outside the cluster, and (with kubernetes-validate installed) the built-in kinds and every Ray
pod template pass the Kubernetes OpenAPI schema in strict mode."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
EXPERIMENTS = REPO / "experiments.yaml"
NAMESPACE = "ttsr"
STUDY_CLUSTERS = {"RayCluster": "ttsr", "RayJob": "ttsr-study"}  # same spec (test below)
PREPARE_JOB = "ttsr-prepare"  # the one-shot data preparation (k8s/prepare-job.yaml)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all() -> list[tuple[str, dict]]:
    files = sorted(K8S.glob("*.yaml")) + sorted((K8S / "examples").glob("*.yaml"))
    return [(str(p.relative_to(K8S)), d) for p in files for d in _docs(p)]


def _one(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in _all() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_templates(*, prepare: bool = True) -> list[tuple[str, dict]]:
    """Every pod template inside RayCluster/RayJob: (label, template); ``prepare=False``
    leaves out the data preparation job's."""
    out = []
    for name, doc in _all():
        if not prepare and doc["metadata"]["name"] == PREPARE_JOB:
            continue
        if doc["kind"] == "RayCluster":
            spec = doc["spec"]
        elif doc["kind"] == "RayJob":
            spec = doc["spec"]["rayClusterSpec"]
        else:
            continue
        out.append((f"{name}:head", spec["headGroupSpec"]["template"]))
        for group in spec["workerGroupSpecs"]:
            out.append((f"{name}:{group['groupName']}", group["template"]))
    return out


def test_every_manifest_has_kind_name_namespace():
    docs = _all()
    kinds = {d["kind"] for _, d in docs}
    assert {"Namespace", "PersistentVolumeClaim", "Deployment", "Service", "Secret"} <= kinds
    assert {"RayCluster", "RayJob"} <= kinds
    for name, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert doc["metadata"]["name"], name
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, name


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_resources(kind):
    doc = _one(kind, STUDY_CLUSTERS[kind])
    assert doc["apiVersion"] == "ray.io/v1"
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["rayVersion"].startswith("2.60")
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    # KubeRay passes rayStartParams to `ray start` as strings
    params = [head["rayStartParams"]] + [g["rayStartParams"] for g in spec["workerGroupSpecs"]]
    assert all(isinstance(v, str) for p in params for v in p.values())
    head_res = head["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in head_res.get("limits", {})
    assert spec["workerGroupSpecs"], "no worker group"
    for group in spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_pods_use_the_project_image_and_mount_data_and_results():
    claims = {d["metadata"]["name"] for _, d in _all() if d["kind"] == "PersistentVolumeClaim"}
    for label, template in _pod_templates(prepare=False):
        pod = template["spec"]
        (container,) = pod["containers"]
        assert container["image"].split("/")[-1].startswith("ttsr-tune:"), label
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert {"/data", "/results", "/dev/shm"} <= set(mounts), label
        volumes = {v["name"]: v for v in pod["volumes"]}
        for path in ("/data", "/results"):
            claim = volumes[mounts[path]]["persistentVolumeClaim"]["claimName"]
            assert claim in claims, (label, claim)
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", label


def test_rayjob_cluster_matches_raycluster():
    cluster = copy.deepcopy(_one("RayCluster")["spec"])
    job_cluster = copy.deepcopy(_one("RayJob", "ttsr-study")["spec"]["rayClusterSpec"])
    for spec in (cluster, job_cluster):
        for group in spec["workerGroupSpecs"]:
            group.pop("replicas")
    assert cluster == job_cluster


def test_rayjob_entrypoint_runs_a_known_study():
    spec = _one("RayJob", "ttsr-study")["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "python" and argv[1].endswith("tune/run.py")
    assert "--address" not in argv  # Ray sets RAY_ADDRESS for job drivers
    assert argv[argv.index("--storage") + 1] == "/results"
    study = argv[argv.index("--study") + 1]
    assert spec["shutdownAfterJobFinishes"] is True
    if not EXPERIMENTS.exists():
        pytest.skip("experiments.yaml not present: study name not checked")
    studies = yaml.safe_load(EXPERIMENTS.read_text())["studies"]
    assert study in studies, f"{study!r} not in experiments.yaml: {sorted(studies)}"
    profile = argv[argv.index("--profile") + 1] if "--profile" in argv else None
    assert profile in (None, "seed", "demo")


def test_nothing_is_exposed_outside_the_cluster():
    for name, doc in _all():
        assert doc["kind"] not in ("Ingress", "Route", "Gateway", "HTTPRoute"), name
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", name
            assert "externalIPs" not in doc["spec"], name
    pods = [(f"{n}", d["spec"]["template"]) for n, d in _all() if d["kind"] == "Deployment"]
    for label, template in pods + _pod_templates():
        pod = template["spec"]
        assert not pod.get("hostNetwork"), label
        for c in pod["containers"]:
            assert all("hostPort" not in p for p in c.get("ports", [])), label


def test_pods_run_unprivileged():
    pods = [(n, d["spec"]["template"]) for n, d in _all() if d["kind"] == "Deployment"]
    for label, template in pods + _pod_templates():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, label
        assert pod["securityContext"]["runAsUser"] != 0, label
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, label
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], label


def test_mlflow_reads_its_stores_from_the_secret():
    deployment = _one("Deployment", "mlflow")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["mlflow", "server"] and "--serve-artifacts" in args
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert {"MLFLOW_BACKEND_STORE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(refs)
    secret = _one("Secret")
    assert {r["name"] for r in refs.values()} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs.values()} <= set(secret["stringData"])
    # no literal credentials anywhere in the Deployment
    assert not any(
        re.search(r"(PASSWORD|SECRET|TOKEN|KEY)", e["name"]) and "value" in e
        for e in container["env"]
    )
    service = _one("Service", "mlflow")
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_secret_is_only_an_example_with_placeholders():
    for name, doc in _all():
        if doc["kind"] == "Secret":
            assert name.startswith("examples/"), f"{name}: a Secret outside k8s/examples/"
            for key, value in doc["stringData"].items():
                assert "REPLACE_ME" in value, (name, key)


def test_schema_of_builtin_kinds_and_pod_templates():
    kv = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate for schema validation"
    )
    version = "1.33"
    checked = 0
    for _, doc in _all():
        if doc["apiVersion"].startswith("ray.io/"):
            continue  # CRDs: no schema bundled; their pod templates are checked below
        kv.validate(doc, version, strict=True)
        checked += 1
    for label, template in _pod_templates():
        wrapper = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": re.sub(r"[^a-z0-9-]", "-", label.lower())},
            "template": template,
        }
        kv.validate(wrapper, version, strict=True)
        checked += 1
    assert checked >= 10


def _groups(spec: dict) -> dict[str, dict]:
    return {g["groupName"]: g for g in spec["workerGroupSpecs"]}


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_mps_worker_group_is_the_gpu_group_plus_the_daemon(kind):
    doc = _one(kind, STUDY_CLUSTERS[kind])
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    groups = _groups(spec)
    mps, gpu = groups["gpu-mps"], groups["gpu"]
    assert mps["replicas"] == 0  # opt in: scale it up instead of `gpu`
    (container,) = mps["template"]["spec"]["containers"]
    command = container["lifecycle"]["postStart"]["exec"]["command"]
    assert command == ["bash", "/home/ray/ttsr-tune/scripts/mps.sh", "start"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in mps["template"]["spec"]["volumes"]}
    for name in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
        assert env[name].startswith("/mps/"), name
    assert "emptyDir" in volumes[mounts["/mps"]]
    # Everything else is the plain GPU group's.
    strip_container = {k: v for k, v in container.items() if k not in ("env", "lifecycle")}
    (plain,) = gpu["template"]["spec"]["containers"]
    plain_env = {e["name"]: e["value"] for e in plain["env"]}
    assert {k: v for k, v in env.items() if not k.startswith("CUDA_MPS_")} == plain_env
    strip_container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "mps"]
    assert strip_container == {k: v for k, v in plain.items() if k != "env"}
    assert [v for v in volumes.values() if v["name"] != "mps"] == gpu["template"]["spec"]["volumes"]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _service_url(name: str) -> str:
    (port,) = _one("Service", name)["spec"]["ports"]
    return f"http://{name}:{port['port']}"


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_every_ray_node_exports_metrics_where_prometheus_looks(kind):
    doc = _one(kind, STUDY_CLUSTERS[kind])
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
        (container,) = group["template"]["spec"]["containers"]
        assert {"name": "metrics", "containerPort": 8080} in container["ports"]
    prom = yaml.safe_load(_one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    (job,) = prom["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [NAMESPACE]}}]
    keep = {
        r["source_labels"][0]: r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    assert keep == {
        "__meta_kubernetes_pod_label_ray_io_is_ray_node": "yes",
        "__meta_kubernetes_pod_container_port_name": "metrics",
    }
    deployment = _one("Deployment", "prometheus")["spec"]["template"]["spec"]
    assert deployment["serviceAccountName"] == "prometheus"
    binding = _one("RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus", "namespace": NAMESPACE}
    ]
    (rule,) = _one("Role", binding["roleRef"]["name"])["rules"]
    assert rule["resources"] == ["pods"] and set(rule["verbs"]) == {"get", "list", "watch"}


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_the_head_points_the_dashboard_at_prometheus_and_grafana(kind):
    doc = _one(kind, STUDY_CLUSTERS[kind])
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    env = _env(head)
    assert env["RAY_PROMETHEUS_HOST"] == _service_url("prometheus")
    assert env["RAY_GRAFANA_HOST"] == _service_url("grafana")
    assert env["RAY_GRAFANA_IFRAME_HOST"] == "http://127.0.0.1:3000"  # the README's port-forward
    # Ray's generated Grafana provisioning and dashboards land on the results volume ...
    root = env["RAY_METRICS_OUTPUT_ROOT"]
    head_mounts = {m["mountPath"]: m["name"] for m in head["volumeMounts"]}
    assert root.startswith("/results/")
    head_volumes = {v["name"]: v for v in spec["headGroupSpec"]["template"]["spec"]["volumes"]}
    claim = head_volumes[head_mounts["/results"]]["persistentVolumeClaim"]["claimName"]
    # ... where Grafana reads them, read-only
    pod = _one("Deployment", "grafana")["spec"]["template"]["spec"]
    (grafana,) = pod["containers"]
    genv = _env(grafana)
    assert genv["GF_PATHS_PROVISIONING"] == f"{root}/grafana/provisioning"
    assert genv["GF_SECURITY_ALLOW_EMBEDDING"] == "true"
    assert genv["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = {m["mountPath"]: m for m in grafana["volumeMounts"]}
    assert mounts["/results"]["readOnly"] is True
    volume = {v["name"]: v for v in pod["volumes"]}[mounts["/results"]["name"]]
    assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}


def test_prepare_job_runs_the_chunks_on_its_own_cluster_with_writable_data():
    job = _one("RayJob", PREPARE_JOB)
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "ttsr.data", "prepare"]
    assert argv[argv.index("--address") + 1] == "auto"  # the job's own cluster
    for flag in ("--src", "--out"):
        assert argv[argv.index(flag) + 1].startswith("/data/"), flag
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    spec = job["spec"]["rayClusterSpec"]
    assert spec["authOptions"] == {"mode": "token"}
    claims = {d["metadata"]["name"] for _, d in _all() if d["kind"] == "PersistentVolumeClaim"}
    for label, template in _pod_templates():
        if not label.startswith("prepare-job.yaml"):
            continue
        pod = template["spec"]
        (container,) = pod["containers"]
        assert container["image"].split("/")[-1].startswith("ttsr-tune:"), label
        mount = {m["mountPath"]: m for m in container["volumeMounts"]}["/data"]
        assert not mount.get("readOnly"), label  # the shards are written from every node
        volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] in claims
        assert not volume["persistentVolumeClaim"].get("readOnly"), label
        assert "nvidia.com/gpu" not in container["resources"]["limits"], label
    (workers,) = spec["workerGroupSpecs"]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
