"""The best checkpoint as an MLflow model (SQLite store): log, register, load by URI, infer."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ttsr.checkpoint import load_model, save_checkpoint
from ttsr.infer import main, super_resolve
from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

mlflow = pytest.importorskip("mlflow")
from ttsr.tracking import get_or_create_experiment, mlflow_model  # noqa: E402 - after it

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ModelConfig(n_feats=8, num_res_blocks=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store with one run whose model.pt was logged as its MLflow model."""
    root = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{root}/mlflow.db"
    torch.manual_seed(0)
    model = TTSR(CONFIG, vgg=RANDOM_VGG)
    ckpt = root / "model.pt"
    save_checkpoint(
        ckpt, model_state=model.reference_state_dict(), model_config=CONFIG, extra={"epoch": 3}
    )
    client = mlflow.MlflowClient(uri)
    exp = get_or_create_experiment(client, "models", artifact_location=(root / "art").as_uri())
    run = client.create_run(exp).info.run_id
    bare = client.create_run(exp).info.run_id  # a run that logged no model
    t0 = time.perf_counter()
    model_id = mlflow_model.log_model(client, run, ckpt, step=3, tags={"epoch": 3})
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    lr, ref = root / "lr.png", root / "ref.png"
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(lr)
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(ref)
    return dict(
        root=root, uri=uri, client=client, run=run, bare=bare, model_id=model_id, ckpt=ckpt,
        lr=lr, ref=ref, log_seconds=seconds,
    )  # fmt: skip


def test_logged_model_is_ready_and_linked_to_its_run(store):
    client = store["client"]
    model = client.get_logged_model(store["model_id"])
    assert model.status == "READY" and model.source_run_id == store["run"]
    assert model.name == "model" and model.tags["epoch"] == "3"
    (output,) = client.get_run(store["run"]).outputs.model_outputs
    assert (output.model_id, output.step) == (store["model_id"], 3)
    assert store["log_seconds"] < 30, store["log_seconds"]  # seconds, not an env resolution


def test_model_directory_keeps_our_model_pt_and_explicit_requirements(store, tmp_path):
    uri = f"models:/{store['model_id']}"
    path = mlflow_model.local_checkpoint(uri, tmp_path / "one", tracking_uri=store["uri"])
    assert path.name == "model.pt" and path.read_bytes() == store["ckpt"].read_bytes()
    location = store["client"].get_logged_model(store["model_id"]).artifact_location
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(tmp_path / "all"), tracking_uri=store["uri"]
        )
    )
    assert (model_dir / "data" / "model.pt").read_bytes() == store["ckpt"].read_bytes()
    conf = mlflow.models.Model.load(str(model_dir / "MLmodel"))
    assert set(conf.flavors) == {"ttsr", "python_function"}
    assert conf.flavors["ttsr"]["n_feats"] == 8
    assert conf.flavors["python_function"]["loader_module"] == "ttsr.tracking.mlflow_model"
    assert conf.signature.inputs.input_names() == ["lr", "ref"]
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert any(r.startswith("torch==") for r in requirements)
    assert any(r.startswith("mlflow==") for r in requirements)
    assert (model_dir / "code" / "ttsr" / "tracking" / "mlflow_model.py").is_file()
    assert not list(model_dir.rglob("__pycache__"))


def test_flavour_and_pyfunc_give_what_infer_gives(store):
    by_file = load_model(store["ckpt"])
    by_uri = mlflow_model.load_model(f"runs:/{store['run']}/model", tracking_uri=store["uri"])
    for a, b in zip(by_file.state_dict().values(), by_uri.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    lr = np.asarray(Image.open(store["lr"]).convert("RGB"))
    ref = np.asarray(Image.open(store["ref"]).convert("RGB"))
    expected = super_resolve(by_file, lr, ref, device=torch.device("cpu"))
    mlflow.set_tracking_uri(store["uri"])  # pyfunc.load_model reads the global URI
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{store['model_id']}")
    finally:
        mlflow.set_tracking_uri(None)
    sr = pyfunc.predict({"lr": lr, "ref": ref})
    assert sr.dtype == np.uint8 and sr.shape == (40, 48, 3)
    assert np.array_equal(sr, expected)


def test_register_versions_and_infer_by_name(store, tmp_path, capsys):
    uri = store["uri"]
    assert mlflow_model.register_best_model(uri, "demo", store["run"]) == 1
    assert mlflow_model.register_best_model(uri, "demo", store["run"]) == 2
    version = store["client"].get_model_version("ttsr-demo", "1")
    # linked both ways (the version's source names the logged model, the logged model lists the
    # versions), the latest under alias "best", the answer as its description
    assert version.source == f"models:/{store['model_id']}" and version.run_id == store["run"]
    logged = store["client"].get_logged_model(store["model_id"])
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [
        {"name": "ttsr-demo", "version": 1}, {"name": "ttsr-demo", "version": 2},
    ]  # fmt: skip
    assert int(store["client"].get_model_version_by_alias("ttsr-demo", "best").version) == 2
    mlflow_model.register_best_model(uri, "demo", store["run"], description="the answer")
    assert int(store["client"].get_model_version_by_alias("ttsr-demo", "best").version) == 3
    assert store["client"].get_model_version("ttsr-demo", "3").description == "the answer"
    common = ["--lr", str(store["lr"]), "--ref", str(store["ref"])]
    assert (
        main(["--checkpoint", str(store["ckpt"]), *common, "--out", str(tmp_path / "f.png")]) == 0
    )
    for i, name in enumerate(["models:/ttsr-demo/latest", "models:/ttsr-demo@best"]):
        out = tmp_path / f"u{i}.png"
        assert main(["--checkpoint", name, "--mlflow-uri", uri, *common, "--out", str(out)]) == 0
        assert np.array_equal(
            np.asarray(Image.open(out)), np.asarray(Image.open(tmp_path / "f.png"))
        )


def test_errors_are_one_line(store, tmp_path, capsys):
    with pytest.raises(mlflow_model.ModelError, match="no logged model"):
        mlflow_model.register_best_model(store["uri"], "demo", store["bare"])
    common = [
        "--lr",
        str(store["lr"]),
        "--ref",
        str(store["ref"]),
        "--out",
        str(tmp_path / "o.png"),
    ]
    for uri in ["models:/ttsr-nope/latest", f"runs:/{store['bare']}/model"]:
        assert main(["--checkpoint", uri, "--mlflow-uri", store["uri"], *common]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and uri in err, err


def test_plain_checkpoints_need_no_mlflow(store, tmp_path):
    # ttsr.infer on a file must not import mlflow (slow, and not needed).
    code = (
        "import sys; from ttsr.infer import main; "
        f"rc = main(['--checkpoint', {str(store['ckpt'])!r}, '--lr', {str(store['lr'])!r}, "
        f"'--ref', {str(store['ref'])!r}, '--out', {str(tmp_path / 'p.png')!r}]); "
        "assert rc == 0; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_driver_logs_the_models_stopped_trials_could_not(store, tmp_path):
    client, uri = store["client"], store["uri"]
    exp = client.get_run(store["run"]).info.experiment_id
    stopped = client.create_run(exp).info.run_id  # ended by Tune before it logged its model
    # A training checkpoint folder as Tune keeps it (state.pt + model.pt).
    folder = tmp_path / "checkpoint_000002"
    folder.mkdir()
    (folder / "state.pt").write_bytes(b"")
    (folder / "model.pt").write_bytes(store["ckpt"].read_bytes())
    logged = mlflow_model.log_missing_models(uri, {store["run"]: folder, stopped: folder})
    assert list(logged) == [stopped]  # the run that has its model keeps it, alone
    (output,) = client.get_run(stopped).outputs.model_outputs
    assert output.model_id == logged[stopped] and output.step == 3  # the epoch model.pt records
    assert mlflow_model.log_missing_models(uri, {stopped: folder}) == {}
    # register_best_model logs a missing model itself when given the checkpoint.
    late = client.create_run(exp).info.run_id
    assert mlflow_model.register_best_model(uri, "late", late, checkpoint=store["ckpt"]) == 1
    assert mlflow_model.has_model(client, late)


def test_pyfunc_loads_from_the_models_own_code(store, tmp_path):
    # Only code/ttsr/ of the model on the path first: a module missing there fails the import.
    location = store["client"].get_logged_model(store["model_id"]).artifact_location
    model_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=location, dst_path=str(tmp_path), tracking_uri=store["uri"]
    )
    code = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(Path(model_dir) / 'code')!r})\n"
        "import ttsr.tracking.mlflow_model as m\n"
        f"p = m._load_pyfunc({str(Path(model_dir) / 'data' / 'model.pt')!r})\n"
        "lr, ref = np.zeros((5, 6, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)\n"
        "sr = p.predict({'lr': lr, 'ref': ref})\n"
        "assert sr.shape == (20, 24, 3), sr.shape\n"
        "mods = {k: v.__file__ for k, v in sys.modules.items() if k.startswith('ttsr')}\n"
        f"assert all(f.startswith({model_dir!r}) for f in mods.values()), mods\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
