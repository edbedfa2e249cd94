"""The release: `python -m build` makes an sdist and a wheel (from that sdist), and the wheel,
installed alone into a fresh virtualenv from the lock file, serves with its package data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import yaml

from gateway import __version__
from gateway.build import commit, describe
from tests.process import free_port

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = [
    "gateway/py.typed",
    "gateway/store/migrations/script.py.mako",
    "gateway/ui/templates/base.html",
    "gateway/ui/static/app.css",
    "gateway/ui/static/app.js",
]


def run(*command: str | Path, cwd: Path = ROOT, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist, then the wheel built from the unpacked sdist: what a user's pip would do."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    [found] = dist.glob(f"webhook_gateway-{__version__}-py3-none-any.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the locked dependencies and the wheel: its bin/ folder."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", venv)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps"]
    run(*pip, "--require-hashes", "-r", ROOT / "requirements.lock", timeout=600)
    run(*pip, wheel)
    return venv / "bin"


def test_version_and_commit_agree_in_both_spellings() -> None:
    shown = run(sys.executable, "-m", "gateway.cli", "version").strip()
    assert shown == run(sys.executable, "-m", "gateway.cli", "--version").strip()
    assert shown == describe()
    assert shown.startswith(f"{__version__} (commit ")
    if (ROOT / ".git").exists():  # a checkout: git's own short hash
        head = run("git", "rev-parse", "--short=12", "HEAD").strip()
        assert commit() in (head, f"{head}+dirty")


@pytest.mark.slow
def test_sdist_carries_what_builds_the_wheel_and_the_commit(dist: Path) -> None:
    [sdist] = dist.glob(f"webhook_gateway-{__version__}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        assert {"pyproject.toml", "README.md", "build_hooks.py", "gateway/_build.py"} <= names
        assert set(PACKAGE_DATA) <= names


@pytest.mark.slow
def test_wheel_holds_the_package_data_and_the_commit_and_no_tests(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert set(PACKAGE_DATA) <= names
        assert any(n.startswith("gateway/store/migrations/versions/") for n in names)
        assert any(n.startswith("handlers/") for n in names)
        assert not any(n.startswith(("tests/", "bench/", "deploy/")) for n in names)
        stamp = archive.read("gateway/_build.py").decode()
    if commit() is not None:
        assert f'COMMIT = "{commit()}"' in stamp


@pytest.fixture
def serving(installed: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`gateway serve` from the fresh virtualenv, in an empty folder, on SQLite."""
    (tmp_path / "rules").mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": f"sqlite:///{tmp_path / 'gateway.db'}",
                "rules": str(tmp_path / "rules"),
                "admin_token": "release-test-" + "0123456789abcdef" * 2,
            }
        )
    )
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    environment["PATH"] = f"{installed}{os.pathsep}{environment.get('PATH', '')}"
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [installed / "gateway", "serve", "--config", config, "--port", str(port)],
            cwd=tmp_path,  # not the checkout: nothing may come from the source tree
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield url, tmp_path
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises SIGTERM once it has shut down cleanly (as PID 1 in a container,
        # where the signal's default action does not apply, the exit status is 0).
        code = process.wait(timeout=30)
        log = (tmp_path / "serve.log").read_text()
        assert code in (0, -signal.SIGTERM), log
        assert "Traceback" not in log


@pytest.mark.slow
def test_the_wheel_in_a_fresh_virtualenv_serves_with_its_migrations_templates_and_static(
    installed: Path, serving: tuple[str, Path]
) -> None:
    url, folder = serving
    health = httpx2.get(f"{url}/healthz").json()
    assert health["version"] == __version__
    assert httpx2.get(f"{url}/readyz").status_code == 200  # the migrations ran: a schema
    login = httpx2.get(f"{url}/ui/login")
    assert login.status_code == 200
    assert "<form" in login.text  # a template
    assert httpx2.get(f"{url}/ui/static/app.css").status_code == 200
    assert (folder / "gateway.db").exists()
    shown = run(installed / "gateway", "--version", cwd=folder).strip()
    assert shown.startswith(f"{__version__} (commit ")
    assert "unknown" not in shown or commit() is None
