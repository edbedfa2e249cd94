"""The deployment files: Kubernetes manifests against the official schemas, the compose file,
the Dockerfile, and the SQLite rule that the processes they start rely on (one worker per file).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx2
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from sqlalchemy.engine import make_url

from gateway import config as config_module
from gateway import insecure
from gateway.ruleset import load_ruleset
from tests.fixtures import requires_fixtures, shopify_order
from tests.postgres import fresh_database
from tests.process import GatewayProcess

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes still commonly run, and the newest the validator ships schemas for.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
# `${NAME}` without a `:-default`: the gateway refuses to start unless NAME is set.
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def resources() -> Iterator[dict[str, Any]]:
    for path in MANIFESTS:
        yield from documents(path)


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in resources() if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def required_variables() -> set[str]:
    lines = (DEPLOY / "gateway.yaml").read_text().splitlines()
    text = "\n".join(line.split("#")[0] for line in lines)
    return set(REQUIRED_VAR.findall(text))


def env_names(container: dict[str, Any]) -> set[str]:
    return {entry["name"] for entry in container.get("env", [])}


# ---------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifest_validates_against_the_official_schema(
    manifest: Path, version: str
) -> None:
    docs = documents(manifest)
    assert docs, f"{manifest.name} holds no resource"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_validator_rejects_a_misspelt_field() -> None:
    deployment = resource("Deployment", "gateway")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_what_kubectl_apply_k_would_send_validates_and_runs_this_version(version: str) -> None:
    """The kustomization rendered as `kubectl apply -k` renders it (kustomize built into
    kubectl, no cluster needed), checked like the files; no API server can be had here.
    """
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is not rendered")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, check=True
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc is not None]
    assert sorted(d["kind"] for d in docs) == sorted(r["kind"] for r in resources())
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "webhook-gateway"
        kubernetes_validate.validate(doc, version, strict=True)
    images = {
        container["image"]
        for doc in docs
        if doc["kind"] in ("Deployment", "Job")
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"webhook-gateway:{_project()['version']}"}


def test_a_disruption_budget_keeps_a_replica_and_the_migration_is_a_job() -> None:
    pdb = resource("PodDisruptionBudget", "gateway")["spec"]
    deployment = resource("Deployment", "gateway")["spec"]
    assert pdb["minAvailable"] >= 1
    assert pdb["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    assert deployment["replicas"] > pdb["minAvailable"]
    job = resource("Job", "gateway-migrate")["spec"]["template"]["spec"]
    [container] = job["containers"]
    assert container["args"][:2] == ["db", "upgrade"]
    assert {"requests", "limits"} <= set(container["resources"])


def test_deployment_probes_ready_and_alive_and_runs_unprivileged() -> None:
    pod = resource("Deployment", "gateway")["spec"]["template"]["spec"]
    [container] = pod["containers"]

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "--no-migrate" in container["args"]


def test_secrets_are_referenced_never_written_in_the_manifests() -> None:
    assert [r["metadata"]["name"] for r in resources() if r["kind"] == "Secret"] == []
    for kind in ("Deployment", "Job"):
        [container] = resource(kind)["spec"]["template"]["spec"]["containers"]
        for entry in container["env"]:
            if re.search(r"SECRET|TOKEN|KEY|STORE|WHSEC", entry["name"]):
                assert "secretKeyRef" in entry.get("valueFrom", {}), (kind, entry["name"])


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_every_variable_the_config_requires_is_set(kind: str) -> None:
    [container] = resource(kind)["spec"]["template"]["spec"]["containers"]
    assert required_variables() <= env_names(container)


def test_configmap_carries_the_image_config_and_rules_that_load(tmp_path: Path) -> None:
    config = resource("ConfigMap", "gateway-config")["data"]["gateway.yaml"]
    assert config == (DEPLOY / "gateway.yaml").read_text()
    for name, text in resource("ConfigMap", "gateway-rules")["data"].items():
        (tmp_path / name).write_text(text)
    environment = {name: "set" for name in required_variables()}
    loaded = config_module.load(DEPLOY / "gateway.yaml", environ=environment)
    assert load_ruleset(loaded.model_copy(update={"rules": str(tmp_path)})).rules


def test_migration_job_upgrades_the_schema_and_autoscaler_targets_the_deployment() -> None:
    job = resource("Job", "gateway-migrate")["spec"]
    [container] = job["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade", "--wait", "60"]
    assert job["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    hpa = resource("HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 2


# ---------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


# What an operator puts in the .env beside compose.yaml: every variable compose requires.
DOTENV = {
    "POSTGRES_PASSWORD": "6f1d2c3b4a5968778695a4b3c2d1e0f1",
    "GATEWAY_ADMIN_TOKEN": "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382716051f2e3d4c",
    "SHOPIFY_WEBHOOK_SECRET": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "STRIPE_WHSEC": "whsec_0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
    "GITHUB_WEBHOOK_SECRET": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
}


class MissingVariable(Exception):
    """Compose would refuse to start: a `${VAR:?message}` variable is not set."""


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` and `${VAR:?message}`, with `env` as its .env file."""

    def substitute(match: re.Match[str]) -> str:
        name, kind, text = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise MissingVariable(f"{name}: {text}")
        return text

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*):([-?])([^}]*)\}", substitute, value)


def _environment(compose: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    return {
        key: _interpolate(str(value), env)
        for key, value in compose["services"]["gateway-1"]["environment"].items()
    }


def test_compose_runs_postgres_a_migration_two_replicas_and_a_mail_catcher(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    replicas = [name for name, s in services.items() if s.get("command", [None])[0] == "serve"]

    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["migrate"]["command"][:2] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert len(replicas) == 2
    assert any("mailpit" in s.get("image", "") for s in services.values())
    for name in replicas:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert "--no-migrate" in services[name]["command"]
        assert any(v.endswith(":/etc/gateway/rules:ro") for v in services[name]["volumes"])


def test_compose_start_order_rests_on_no_health_condition(compose: dict[str, Any]) -> None:
    """podman-compose ignores `service_healthy` on podman < 4.6, and podman 4.3 cannot start a
    container whose dependency has dependencies: the migration waits for PostgreSQL itself.
    """
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade", "--wait", "60"]
    assert "depends_on" not in migrate
    for name, service in services.items():
        for dependency, wanted in service.get("depends_on", {}).items():
            assert wanted["condition"] != "service_healthy", (name, dependency)
            assert "depends_on" not in services[dependency], (name, dependency)


def test_compose_services_have_healthchecks_whose_commands_compile(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        if name == "migrate":
            continue  # one-shot: done is its health
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        if test[1:3] == ["python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")


def test_compose_environment_satisfies_the_image_config(compose: dict[str, Any]) -> None:
    environment = _environment(compose, DOTENV)
    assert required_variables() <= set(environment)
    loaded = config_module.load(DEPLOY / "gateway.yaml", environ=environment)
    assert loaded.store.startswith("postgresql+asyncpg://")
    assert loaded.handlers["email"]["host"] == "mailpit"
    # The replicas listen on 0.0.0.0: with these values `gateway serve` starts.
    assert insecure.refused(loaded, loaded.host, insecure=False) == []


@pytest.mark.parametrize("name", sorted(DOTENV))
def test_compose_refuses_to_start_without_each_secret(compose: dict[str, Any], name: str) -> None:
    with pytest.raises(MissingVariable, match=name):
        _environment(compose, {k: v for k, v in DOTENV.items() if k != name})


def test_compose_replicas_refuse_the_providers_test_secrets(compose: dict[str, Any]) -> None:
    test_values = {**DOTENV, "GITHUB_WEBHOOK_SECRET": "It's a Secret to Everybody"}
    loaded = config_module.load(DEPLOY / "gateway.yaml", environ=_environment(compose, test_values))

    refused = insecure.refused(loaded, loaded.host, insecure=False)

    assert [f.field for f in refused] == ["sources.ci.secret"]


# ---------------------------------------------------------------------- Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    start = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


def test_dockerfile_runs_the_gateway_as_a_non_root_user() -> None:
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, "the final stage sets no USER: the gateway would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    entrypoint = [yaml.safe_load(a) for k, a in stage if k == "ENTRYPOINT"][-1]
    command = [yaml.safe_load(a) for k, a in stage if k == "CMD"][-1]
    assert entrypoint + command == ["gateway", "serve", "--host", "0.0.0.0"]  # noqa: S104
    assert ("EXPOSE", "8000") in stage


def test_dockerfile_healthcheck_probes_healthz_with_python() -> None:
    [healthcheck] = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    _, _, command = healthcheck.partition("CMD ")
    argv = yaml.safe_load(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


def test_dockerfile_holds_no_secret_and_keeps_no_pip_cache() -> None:
    for keyword, args in dockerfile():
        if keyword in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or args.split()[:1]
            for name in names:
                assert not re.search(r"SECRET|PASSWORD|TOKEN|API_KEY|WHSEC", name.upper()), name
        if keyword in ("COPY", "ADD"):
            assert ".env" not in shlex.split(args), "a .env file would bake secrets into the image"
        if keyword == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args


def test_dockerfile_copies_only_what_exists() -> None:
    root = DEPLOY.parent
    for keyword, args in dockerfile():
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _destination = shlex.split(args)
        missing = [s for s in sources if not (root / s).exists()]
        if missing == ["README.md"]:
            pytest.skip("README.md is not written yet: the image build needs it (pyproject)")
        assert missing == []


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def test_dockerfile_builds_without_a_registry_from_the_hashed_locks() -> None:
    # `# syntax=` makes BuildKit fetch a frontend image before building: offline builds fail.
    assert "syntax=" not in (DEPLOY / "Dockerfile").read_text().splitlines()[0]
    installs = [a for k, a in dockerfile() if k == "RUN" and re.search(r"pip .*install", a)]
    assert installs
    for args in installs:
        for command in args.split("&&"):
            if "install" in command:
                assert "--require-hashes" in command or "/wheels/" in command, command


def test_the_runtime_image_has_no_pip_a_data_volume_and_labels() -> None:
    build = dockerfile()[: len(dockerfile()) - len(final_stage())]
    assert any("venv --without-pip /opt/venv" in a for k, a in build if k == "RUN")
    stage = final_stage()
    assert ("COPY", "--from=build /opt/venv /opt/venv") in stage
    assert ("VOLUME", "/var/lib/gateway/data") in stage
    labels = " ".join(a for k, a in stage if k == "LABEL")
    for name in ("source", "version", "revision"):
        assert f"org.opencontainers.image.{name}=" in labels
    defaults = dict(a.split("=", 1) for k, a in stage if k == "ARG" and "=" in a)
    assert defaults["GATEWAY_VERSION"] == _project()["version"]
    # matplotlib only with --build-arg EXTRAS=charts
    assert defaults["EXTRAS"] == '""'


def _locked(name: str) -> dict[str, set[str]]:
    """{normalised name: versions} of a lock file (two where a marker splits by Python version);
    every pin carries hashes.
    """
    text = (ROOT / name).read_text()
    pinned = r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(?: ;[^\n]*)? \\$"
    pins = re.findall(pinned, text, re.MULTILINE)
    assert pins, name
    lines = re.findall(r"^[A-Za-z0-9].*$", text, re.MULTILINE)
    assert len(lines) == len(pins), f"{name} has a line that is not a pin followed by hashes"
    assert len(re.findall(r"^    --hash=sha256:", text, re.MULTILINE)) >= len(pins)
    versions: dict[str, set[str]] = {}
    for pin, version in pins:
        versions.setdefault(_normal(pin), set()).add(version)
    return versions


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_files_pin_every_dependency_and_agree_with_each_other() -> None:
    from packaging.requirements import Requirement

    locks = {n: _locked(n) for n in ("requirements.lock", "requirements-charts.lock")}
    locks["requirements-test.lock"] = _locked("requirements-test.lock")
    project = _project()
    extras = project["optional-dependencies"]
    wanted = {
        "requirements.lock": project["dependencies"],
        "requirements-charts.lock": project["dependencies"] + extras["charts"],
        "requirements-test.lock": project["dependencies"] + extras["charts"] + extras["test"],
    }
    for name, requirements in wanted.items():
        for line in requirements:
            requirement = Requirement(line)
            if _normal(requirement.name) == "webhook-gateway":
                continue  # the test extra names the charts extra
            versions = locks[name].get(_normal(requirement.name))
            assert versions, f"{requirement.name} is not in {name}: run deploy/lock"
            for version in versions:
                assert requirement.specifier.contains(version), (name, line, version)
    assert "matplotlib" not in locks["requirements.lock"]
    # One version of a package everywhere: the image runs what the tests ran.
    for name, pins in locks.items():
        for package, versions in locks["requirements.lock"].items():
            assert pins.get(package, versions) == versions, (name, package)


def test_dockerignore_keeps_secrets_history_and_the_virtualenv_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "**/.env", ".git", ".venv"} <= set(ignored)


# ---------------------------------------------------------------------- SQLite: one worker


@pytest.mark.slow
def test_second_worker_on_one_sqlite_database_refuses_to_start(
    write_config: Callable[..., Path],
) -> None:
    config = write_config()
    first = GatewayProcess(config, None, "--role", "worker").start()
    try:
        ingest = GatewayProcess(config, None, "--role", "ingest").start()  # not a worker: fine
        ingest.stop()
        with pytest.raises(RuntimeError) as refused:
            GatewayProcess(config, None, "--role", "worker").start()
        assert "another gateway worker (pid " in str(refused.value)
        assert "SQLite allows one worker process" in str(refused.value)
    finally:
        first.kill()  # even kill -9 releases the lock: the next worker starts
    GatewayProcess(config, None, "--role", "worker").start().stop()


# ---------------------------------------------------------------------- PostgreSQL replicas


@requires_fixtures
@pytest.mark.slow
async def test_replicas_started_after_db_upgrade_wake_each_other_on_postgresql(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """The compose setup in miniature: `gateway db upgrade`, then replicas with --no-migrate;
    the ingest replica's NOTIFY wakes the worker replica well before its fallback poll.
    """
    async with fresh_database() as url:
        config = write_config(store=url)
        shutil.copy(Path(__file__).parents[1] / "rules" / "log.yaml", tmp_path / "rules")
        upgrade = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "db", "upgrade", "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert upgrade.returncode == 0, upgrade.stderr
        ingest = GatewayProcess(config, None, "--no-migrate", "--role", "ingest").start()
        worker = GatewayProcess(config, None, "--no-migrate", "--role", "worker").start()
        admin = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            latencies = []
            for n in range(8):
                body, headers = shopify_order(f"replica-{n}")
                response = httpx2.post(f"{ingest.url}/hooks/shop", content=body, headers=headers)
                assert response.status_code == 202
                acknowledged = time.monotonic()
                while True:
                    status = await admin.fetchval(
                        "SELECT status FROM runs WHERE event_id = $1", response.json()["id"]
                    )
                    if status == "succeeded":
                        break
                    assert time.monotonic() - acknowledged < 10, f"run {status} after 10 s"
                    await asyncio.sleep(0.01)
                latencies.append(time.monotonic() - acknowledged)
        finally:
            await admin.close()
            ingest.stop()
            worker.stop()
    # Without NOTIFY the worker finds new events only on its 1 s fallback poll: each would
    # wait 0.5 s or more half of the time.
    assert max(latencies) < 0.5, latencies


# ---------------------------------------------------------------------- db upgrade --wait


async def _db_upgrade(config: Path, *options: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "gateway.cli", "db", "upgrade", "--config", str(config)],
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.slow
async def test_db_upgrade_waits_for_a_database_that_comes_up_later(
    write_config: Callable[..., Path],
) -> None:
    """The compose `migrate` service starts with PostgreSQL, not after it is ready."""
    async with fresh_database() as url:
        real = make_url(url)
        port = _free_port()  # where PostgreSQL "comes up": a forwarder opened 1.5 s late
        config = write_config(store=real.set(host="127.0.0.1", port=port).render_as_string(False))

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream_reader, upstream_writer = await asyncio.open_connection(real.host, real.port)

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
                sink.close()

            await asyncio.gather(
                pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
            )

        # The port opens once the command has said it waits: not after a fixed delay, which a
        # loaded machine could outlast before the command's first try.
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "gateway.cli", "db", "upgrade", "--config", str(config)],
            "--wait",
            "30",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        first = await asyncio.wait_for(process.stderr.readline(), timeout=30)
        server = await asyncio.start_server(forward, "127.0.0.1", port)
        out_bytes, rest = await asyncio.wait_for(process.communicate(), timeout=60)
        server.close()
        code, out, err = process.returncode, out_bytes.decode(), (first + rest).decode()

    assert code == 0, err
    assert "waiting for the database" in err
    assert "schema at revision" in out


async def test_db_upgrade_gives_up_after_its_wait_and_says_so(
    write_config: Callable[..., Path],
) -> None:
    config = write_config(store=f"postgresql+asyncpg://gateway@127.0.0.1:{_free_port()}/gateway")
    started = time.monotonic()

    code, _, err = await _db_upgrade(config, "--wait", "1")

    assert code == 1
    assert "error: the database did not answer within 1 s" in err
    assert "Traceback" not in err
    assert time.monotonic() - started < 20
