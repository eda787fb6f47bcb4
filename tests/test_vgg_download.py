"""`python -m ttsr.vgg download` against a 127.0.0.1 server this file starts (never the internet):
the file lands hash-checked, and no failure (wrong hash, short transfer, SIGTERM, no server,
HTTP error) leaves a partial file, a temporary file or a folder behind."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import ttsr.vgg.__main__ as vgg_cli
from ttsr.vgg import ENV_VAR, TORCHVISION_FILE, TORCHVISION_SHA256
from ttsr.vgg.__main__ import STALE_S, DownloadError, download, source

REPO = Path(__file__).resolve().parent.parent
BODY = os.urandom(3 * 2**20 + 12345)  # a few read chunks; no need for real weights
SHA = hashlib.sha256(BODY).hexdigest()
GOOD = f"/vgg19-{SHA[:8]}.pth"  # torchvision's naming: the start of the sha256 in the name
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class _Handler(BaseHTTPRequestHandler):
    """Routes: "ok", "short" (announces the whole file, sends all but 1000 bytes, then closes)
    and "stall" (sends half, then waits for the test to release it)."""

    def do_GET(self) -> None:
        server = self.server
        server.hits[self.path] += 1
        mode = server.routes.get(self.path)
        if mode is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if mode == "short":
            self.wfile.write(BODY[:-1000])
            return
        if mode == "stall":
            self.wfile.write(BODY[: len(BODY) // 2])
            self.wfile.flush()
            server.release.wait(timeout=120)
            return
        self.wfile.write(BODY)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.hits = Counter()
    srv.release = threading.Event()
    srv.routes = {GOOD: "ok", "/short/vgg19-x.pth": "short", "/stall/vgg19-x.pth": "stall"}
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


@pytest.fixture
def hooks(server, monkeypatch, tmp_path):
    """The local server as the download's mirror: ``server.path`` (default GOOD) and
    ``server.sha`` (default SHA) go to ``--url``/``--sha256`` (`_flags`) or to `download`
    (`_mirror`). No proxy; an empty torch cache."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    server.path, server.sha = GOOD, SHA
    return server


def _mirror(server) -> dict[str, str | None]:
    return {"url": server.url + server.path, "sha256": server.sha}


def _flags(server) -> list[str]:
    sha = ["--sha256", server.sha] if server.sha else []
    return ["--url", server.url + server.path, *sha]


def _cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "ttsr.vgg", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _run_cli(*args: str) -> tuple[int, str, str]:
    proc = _cli(*args)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_torchvision_is_the_default_source(monkeypatch):
    from torchvision.models import VGG19_Weights

    src = source()
    assert src.url == VGG19_Weights.IMAGENET1K_V1.url
    assert src.url.endswith("/" + TORCHVISION_FILE)
    assert (src.sha256, src.name_prefix) == (TORCHVISION_SHA256, "dcbb9e9d")


def test_download_cli_success_then_already_present(hooks, tmp_path):
    to = tmp_path / "new" / "weights"
    rc, out, err = _run_cli("download", "--to", str(to), *_flags(hooks))
    assert rc == 0, err
    dest = to / TORCHVISION_FILE
    assert dest.read_bytes() == BODY
    assert _everything_under(tmp_path / "new") == ["weights", f"weights/{TORCHVISION_FILE}"]
    assert f"saved {dest} (3 MiB, sha256 {SHA} verified)" in out
    assert f"export {ENV_VAR}={dest}" in out  # not where training looks by itself
    assert "found in sys.modules" not in err  # `python -m` loaded the package once
    assert hooks.hits[GOOD] == 1

    mtime = dest.stat().st_mtime_ns
    rc, out, err = _run_cli("download", "--to", str(to), *_flags(hooks))
    assert rc == 0, err
    assert f"already present and verified: {dest}" in out
    assert hooks.hits[GOOD] == 1 and dest.stat().st_mtime_ns == mtime


def test_default_destination_is_torchvision_cache(hooks, tmp_path, capsys):
    assert vgg_cli.main(["download", "--no-progress", *_flags(hooks)]) == 0
    dest = tmp_path / "torch-home" / "hub" / "checkpoints" / TORCHVISION_FILE
    assert dest.read_bytes() == BODY
    out = capsys.readouterr().out
    assert f"downloading {hooks.url + GOOD} to {dest}" in out
    assert f"saved {dest}" in out and "export" not in out  # training finds it there


def test_a_file_path_destination_and_a_wrong_file_is_replaced(hooks, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "mine.pth"
    dest.write_bytes(b"something else")
    monkeypatch.setenv(ENV_VAR, str(dest))  # training will use it: no hint to export
    assert vgg_cli.main(["download", "--to", str(dest), *_flags(hooks)]) == 0
    assert dest.read_bytes() == BODY
    out = capsys.readouterr().out
    assert "replacing a file with the wrong sha256" in out and "export" not in out
    assert _everything_under(tmp_path) == ["mine.pth"]

    # the cache is not what training uses while $TTSR_VGG19_WEIGHTS names another file
    assert vgg_cli.main(["download", *_flags(hooks)]) == 0
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / TORCHVISION_FILE
    assert f"export {ENV_VAR}={cached}" in capsys.readouterr().out


def test_wrong_hash_leaves_nothing(hooks, tmp_path, monkeypatch, capsys):
    hooks.sha = "0" * 64
    to = tmp_path / "new"
    assert vgg_cli.main(["download", "--to", str(to), *_flags(hooks)]) == 2
    err = capsys.readouterr().err
    expected = f'invalid hash value (expected "{"0" * 64}", got "{SHA}")'
    _assert_one_line_error(err, hooks.url + GOOD, expected, "download discarded")
    assert not to.exists()  # nor the folder it made


def test_hash_in_the_file_name_is_checked(hooks, tmp_path, monkeypatch):
    """torchvision's convention alone, when no full sha256 is known."""
    hooks.routes["/vgg19-00000000.pth"] = "ok"
    hooks.path, hooks.sha = "/vgg19-00000000.pth", None
    with pytest.raises(DownloadError, match=r'expected "00000000", got .*download discarded'):
        download(tmp_path, **_mirror(hooks))
    assert _everything_under(tmp_path) == []
    hooks.path = GOOD
    assert download(tmp_path, **_mirror(hooks)).fetched is True
    hooks.path = "/vgg19-x.pth"  # no hash in the name, none given: refused before any transfer
    with pytest.raises(DownloadError, match=r"no hash in its file name; give --sha256"):
        download(tmp_path, **_mirror(hooks))


def test_short_transfer_leaves_nothing_and_keeps_the_old_file(hooks, tmp_path, monkeypatch, capsys):
    hooks.path = "/short/vgg19-x.pth"
    dest = tmp_path / TORCHVISION_FILE
    dest.write_bytes(b"an old file")
    assert vgg_cli.main(["download", "--to", str(tmp_path), *_flags(hooks)]) == 2
    err = capsys.readouterr().err
    _assert_one_line_error(err, "invalid hash value", "a short or damaged transfer")
    assert _everything_under(tmp_path) == [TORCHVISION_FILE]
    assert dest.read_bytes() == b"an old file"


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_mid_transfer_leaves_nothing(hooks, tmp_path, monkeypatch):
    hooks.path = "/stall/vgg19-x.pth"
    to = tmp_path / "w"

    def receiving() -> bool:
        try:
            return any(p.stat().st_size > 0 for p in to.glob("*.partial"))
        except FileNotFoundError:
            return False

    proc = _cli("download", "--to", str(to), *_flags(hooks))
    try:
        _wait_for(lambda: receiving() or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    _assert_one_line_error(err, "interrupted")
    assert not to.exists()


def test_offline_is_one_line(hooks, tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/vgg19-x.pth"
        to = str(tmp_path / "w")
        rc, out, err = _run_cli("download", "--to", to, "--url", url, "--sha256", SHA)
    assert rc == 2
    _assert_one_line_error(err, f"cannot download {url}: ", "Connection refused")
    assert out == f"downloading {url} to {to}/{TORCHVISION_FILE}\n"  # then nothing else
    assert _everything_under(tmp_path) == []


def test_http_error_is_one_line(hooks, tmp_path, monkeypatch, capsys):
    hooks.path = "/missing/vgg19-x.pth"
    assert vgg_cli.main(["download", "--to", str(tmp_path / "w"), *_flags(hooks)]) == 2
    _assert_one_line_error(capsys.readouterr().err, "HTTP 404")
    assert _everything_under(tmp_path) == []


def test_bad_sha256_flag_is_one_line(hooks, capsys):
    hooks.sha = "abc"
    assert vgg_cli.main(["download", *_flags(hooks)]) == 2
    _assert_one_line_error(capsys.readouterr().err, "--sha256: not a sha256 hex digest")


def test_stale_temporary_file_of_a_killed_download_is_removed(hooks, tmp_path):
    # torch.hub's temporary names; a running download writes to its file at least every
    # TIMEOUT_S, one killed mid-transfer never again
    stale = tmp_path / f"{TORCHVISION_FILE}.{'a' * 32}.partial"
    stale.write_bytes(b"half")
    old = time.time() - STALE_S - 60
    os.utime(stale, (old, old))
    alive = tmp_path / f"{TORCHVISION_FILE}.{'b' * 32}.partial"
    alive.write_bytes(b"someone else's, still running")
    assert download(tmp_path, **_mirror(hooks)).fetched is True
    assert not stale.exists() and alive.exists()
