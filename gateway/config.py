"""The gateway's configuration: `gateway.yaml`, with `${VAR}` read from the environment.

Every problem is collected, not just the first, so `gateway check` can list them all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Protocol

from dotenv import load_dotenv
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway import plugins, yamlfile
from gateway import problems as wording
from gateway.errors import ConfigError
from gateway.knowledge_config import (
    COLLECTION_NAME as COLLECTION_NAME,
)
from gateway.knowledge_config import (
    MAX_PASSAGES as MAX_PASSAGES,
)
from gateway.knowledge_config import (
    KnowledgeCollection as KnowledgeCollection,
)
from gateway.knowledge_config import (
    _collection_names,
)
from gateway.knowledge_config import (
    knowledge_problems as knowledge_problems,
)
from gateway.mcp.settings import McpEndpointConfig, McpServerConfig, server_name_problem
from gateway.nesting import READABLE_DEPTH
from gateway.reconcile_config import problems as reconcile_problems
from gateway.retention_config import RetentionConfig
from gateway.retrying import RetryConfig, RetryPolicy, Seconds
from gateway.tools import FAMILIES

DEFAULT_PATH = Path("gateway.yaml")
MAX_PROCESSES = 8  # `server.processes`: the door and up to 7 worker processes
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SourceConfig(BaseModel):
    """One webhook source: a name in the URL, a provider that verifies it, its secrets.

    Provider-specific settings (e.g. the generic provider's header names) are extra keys,
    validated by the provider's own settings model.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    provider: str
    secret: str | None = None
    secrets: list[str] = Field(default_factory=list)
    tolerance: int = Field(300, ge=0, description="seconds a signed timestamp may be off")
    # Asking the provider's API what it sent (gateway.reconcile_config has each provider's).
    reconcile: dict[str, Any] | None = None

    @property
    def all_secrets(self) -> list[str]:
        """Every active secret, the single `secret` first: several at once allow rotation."""
        found = ([self.secret] if self.secret else []) + list(self.secrets)
        return [s for s in found if s]


class EvalConfig(BaseModel):
    """`gateway eval` (docs/eval.md)."""

    model_config = ConfigDict(extra="forbid")

    # USD: an eval whose estimated model cost is above this needs `--yes`.
    confirm_above: float = Field(1.0, ge=0)
    # Where evals are kept (never the gateway's store): `--store` overrides it, the dashboard
    # reads it. None: `eval.db` beside gateway.yaml.
    store: str | None = None


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Runs in progress at once; a slot is held through its claim's commit (docs/operations.md).
    concurrency: int = Field(64, ge=1)
    max_attempts: int | None = Field(None, ge=1)
    backoff_base: float | None = Field(None, gt=0)
    backoff_max: float | None = Field(None, gt=0)
    # How long a claimed run stays the claimer's without renewal (renewed every third of it):
    # after a replica dies, another takes its runs over once this has passed.
    lease_seconds: float = Field(30.0, gt=0)


class ServerConfig(BaseModel):
    """What `gateway serve` grants one client: request sizes and times, connections at once.

    docs/deploy.md has the table of these limits and what a reverse proxy must still add.
    """

    model_config = ConfigDict(extra="forbid")

    # The request line and headers together; a longer head is answered 431.
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    # A request body on every route but /hooks (the top-level `max_body_bytes`); over: 413.
    max_body_bytes: int = Field(64 * 1024, gt=0)
    # Seconds from a connection's start, or from its previous response, to the end of the next
    # request's head; a client still sending it then is answered 408 and disconnected.
    header_timeout: float = Field(10.0, gt=0)
    # Seconds from the end of a request's head to the end of its body; then 408, disconnected.
    body_timeout: float = Field(30.0, gt=0)
    # Seconds an idle connection is kept open for a next request (at most `header_timeout`).
    keep_alive_timeout: int = Field(5, ge=1)
    # Connections served at once; a request on a connection beyond them is answered 503.
    max_connections: int = Field(1000, ge=1)
    # N > 1: the door and N - 1 worker processes splitting `worker.concurrency` (docs/deploy.md).
    processes: int = Field(1, ge=1, le=MAX_PROCESSES)

    @model_validator(mode="after")
    def _idle_within_header_timeout(self) -> ServerConfig:
        # The header timeout runs from a response's end too: it would cut a longer keep-alive.
        if self.keep_alive_timeout > self.header_timeout:
            raise ValueError(
                f"keep_alive_timeout ({self.keep_alive_timeout} s) cannot exceed "
                f"header_timeout ({self.header_timeout:g} s)"
            )
        return self


class Budget(BaseModel):
    """`budget:` what a rule's assistant (or, at the top of gateway.yaml, all of them) may
    spend on its model per day; `on_budget` says what a run that finds it reached does."""

    model_config = ConfigDict(extra="forbid")

    cost_per_day: float | None = Field(None, gt=0, description="USD, from the price table")
    tokens_per_day: int | None = Field(None, ge=1)
    # fail: the run ends `failed` ("budget reached"); defer: it waits for the next day.
    on_budget: Literal["fail", "defer"] = "fail"


class GlobalBudget(Budget):
    """The top-level `budget:`, with the zone whose midnight starts a day (for every budget)."""

    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = "sqlite:///gateway.db"
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    # Levels of objects and arrays a webhook body may nest; deeper is refused with 400.
    max_json_depth: int = Field(64, ge=1, le=READABLE_DEPTH)
    rules: str = "rules"
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    handlers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Retrieval collections (docs/knowledge.md), searched by the `knowledge.search` tool.
    knowledge: dict[str, KnowledgeCollection] = Field(default_factory=dict)
    # MCP servers whose tools (`SERVER.TOOL`) rules may call: docs/mcp.md.
    mcp: dict[str, McpServerConfig] = Field(default_factory=dict)
    # The gateway's own `/mcp` endpoint for agents, with per-client tokens and scopes.
    mcp_server: McpEndpointConfig | None = None
    # What all assistants together may spend on models per day (a rule may have its own).
    budget: GlobalBudget | None = None
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    # SIGTERM: seconds calls in flight may take to finish (under Kubernetes' default 30 s).
    shutdown_grace: Seconds = Field(25.0, ge=0)
    server: ServerConfig = Field(default_factory=ServerConfig)
    # How long history is kept, where pruned history is archived, the free-disk floor.
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    # OpenTelemetry: {exporter: console|otlp, endpoint, service_name}; needs the tracing extra.
    tracing: dict[str, Any] | None = None
    # Extra field names (in log lines) whose values are always redacted, beside the built-in
    # secret-looking names.
    redact_fields: list[str] = Field(default_factory=list)
    # Where relative paths (store file, rules directory) are resolved; set by `load`.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    # The file it was read from, with the line of every key: later checks (model profiles)
    # name the line of what they find too.
    _document: yamlfile.Document | None = PrivateAttr(None)

    def where(self, location: yamlfile.Location) -> str:
        """`file:line` of a key of the config file, as problems print it."""
        return self._document.where(location) if self._document else "gateway.yaml"

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in sources:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"source name {name!r} may only use letters, digits, . _ -")
        return sources

    @field_validator("knowledge")
    @classmethod
    def _knowledge_names(
        cls, knowledge: dict[str, KnowledgeCollection]
    ) -> dict[str, KnowledgeCollection]:
        return _collection_names(knowledge)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The default retry policy: `retry:`, with the older `worker:` settings over it."""
        return self.retry.default(self.worker)

    @property
    def rules_dir(self) -> Path:
        return (self.base_dir / self.rules).resolve()

    @property
    def store_url(self) -> str:
        """The store URL with relative SQLite paths resolved against the config's folder."""
        return self.resolved(self.store)

    @property
    def eval_store_url(self) -> str:
        """Where `gateway eval` keeps its runs: `eval.store`, else `eval.db` beside the config."""
        return self.resolved(self.eval.store or "sqlite:///eval.db")

    def resolved(self, url: str) -> str:
        """A store URL with a relative SQLite path resolved against the config's folder."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str((self.base_dir / rest).resolve())
        return url


def resolve_path(path: str | Path | None) -> Path:
    """`--config`, else `$GATEWAY_CONFIG`, else `./gateway.yaml`."""
    if path:
        return Path(path)
    return Path(os.environ.get("GATEWAY_CONFIG") or DEFAULT_PATH)


def load(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> Config:
    """Read, expand and validate the config; raise `ConfigError` listing every problem."""
    config, problems = read(path, environ=environ)
    if problems:
        raise ConfigError(problems)
    return config


def read(
    path: str | Path | None = None, *, environ: dict[str, str] | None = None
) -> tuple[Config, list[str]]:
    """The config and every problem in it, in line order. With problems, the config holds the
    parts that are valid, so `gateway check` can go on to the rules in the same pass. Raises
    `ConfigError` only when there is nothing to go on (no file, not YAML, not a mapping)."""
    file = resolve_path(path)
    if not file.exists():
        raise ConfigError([f"{file}: config file not found (use --config or GATEWAY_CONFIG)"])
    load_dotenv(file.parent / ".env", override=False)
    env = dict(os.environ) if environ is None else environ
    try:
        doc = yamlfile.load(file)
    except yamlfile.YamlSyntaxError as exc:
        raise ConfigError([str(exc)]) from None
    raw = doc.data if doc.data is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{doc.where(())}: the config must be a mapping"])

    problems = [
        f"{file}:{d.line}: {'.'.join(map(str, d.location))}: {d.message}" for d in doc.duplicates
    ]
    expanded = _expand(raw, (), env, doc, problems)
    expanded["base_dir"] = file.parent.resolve()
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc)
            problems.append(f"{doc.where(loc)}: {field}: {wording.message(Config, err)}")
        config = wording.partial(Config, expanded) or Config()
    config._document = doc
    sources = expanded.get("sources")
    if isinstance(sources, dict):
        problems += _check_sources(sources, doc)
    handlers = expanded.get("handlers")
    if isinstance(handlers, dict):
        problems += _check_handlers(handlers, doc)
    for name in expanded.get("mcp") or {}:
        if problem := server_name_problem(str(name), FAMILIES):
            problems.append(f"{doc.where(('mcp', name))}: mcp.{name}: {problem}")
    for at, message in knowledge_problems(config.knowledge, config.models):
        problems.append(f"{doc.where(at)}: {'.'.join(map(str, at))}: {message}")
    return config, wording.in_line_order(problems)


def _expand(
    value: Any,
    at: yamlfile.Location,
    env: dict[str, str],
    doc: yamlfile.Document,
    problems: list[str],
) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, (*at, k), env, doc, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*at, i), env, doc, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            field = ".".join(str(p) for p in at)
            problems.append(f"{doc.where(at)}: {field}: environment variable {name} is not set")
            return match.group(0)  # left as written, so no second problem follows from it

        return _VAR.sub(substitute, value)
    return value


class SourceCheck(Protocol):
    """What the config needs of a provider (`gateway.ingest.provider.Provider`), found by name
    in the `gateway.providers` registry: the config never imports ingest."""

    def check(self, source: SourceConfig) -> list[str]: ...


def _check_sources(sources: dict[str, Any], doc: yamlfile.Document) -> list[str]:
    """Each source against its provider, even when other parts of the config are invalid."""
    providers: plugins.Registry[SourceCheck] = plugins.registry(plugins.PROVIDERS)
    problems = []
    for name, raw in sources.items():
        at: yamlfile.Location = ("sources", name)
        try:
            source = SourceConfig.model_validate(raw)
        except ValidationError:
            continue  # already reported by the Config validation
        provider = providers.get(source.provider)
        if provider is None:
            known = ", ".join(sorted(providers))
            hint = wording.did_you_mean(source.provider, providers)
            problems.append(
                f"{doc.where((*at, 'provider'))}: sources.{name}.provider: unknown provider "
                f"{source.provider!r} (known: {known}){hint}"
            )
            continue
        for message in provider.check(source):
            problems.append(f"{doc.where(at)}: sources.{name}: {message}")
        if source.reconcile is not None:
            for field, message in reconcile_problems(source.provider, source.reconcile):
                where = (*at, "reconcile", *field)
                dotted = ".".join(map(str, where))
                problems.append(f"{doc.where(where)}: {dotted}: {message}")
    return problems


def _check_handlers(handlers: dict[str, Any], doc: yamlfile.Document) -> list[str]:
    """Each `handlers:` block against its tool family's settings model, at the field it names,
    so a typo (`handlers.jira.sever`) fails `gateway check`, not the first call."""
    problems = []
    for name, block in handlers.items():
        at: yamlfile.Location = ("handlers", name)
        family = FAMILIES.get(name)
        if family is None:
            known = ", ".join(sorted(FAMILIES))
            hint = wording.did_you_mean(name, FAMILIES)
            problems.append(
                f"{doc.where(at)}: handlers.{name}: unknown tool family {name!r} "
                f"(known: {known}){hint}"
            )
            continue
        if not isinstance(block, dict):
            continue  # already reported by the Config validation
        for loc, message in family.problems(block):
            field = ".".join(str(p) for p in (*at, *loc))
            problems.append(f"{doc.where((*at, *loc))}: {field}: {message}")
    return problems
