"""Application configuration: `AppConfig` and `load_config()`.

Settings come from, highest priority first: explicit keyword arguments, environment
variables (`BALLAST_` prefix, `__` for nesting, e.g. `BALLAST_DATABASE__URL`), and an
optional TOML file named by `BALLAST_CONFIG_FILE`. Secrets are `SecretStr` and are read
from environment variables only: a secret found in the config file is an error, and
stage/prod refuse to start with a missing or default secret.
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ballast_common.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


# SQLAlchemy is a server extra (`ballast-common[server]`): the UI's image has no database
# layer, so there the database settings are carried, not parsed.
def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


_HAS_SQLALCHEMY = _installed("sqlalchemy")

# Values that are fine on a laptop and never in a shared environment.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 - refused outside dev
DEFAULT_SECRETS = frozenset(
    {"", "changethis", "changeme", "secret", "password", DEV_SECRET_KEY}
)

CONFIG_FILE_ENV = "BALLAST_CONFIG_FILE"


class Env(StrEnum):
    dev = "dev"
    stage = "stage"
    prod = "prod"


class DatabaseConfig(BaseModel):
    """Where the data lives. The embedded default is a SQLite file under ./var/."""

    # SQLAlchemy URL without a password; the password comes from `password` (env only).
    url: str = "sqlite:///./var/ballast.db"
    password: SecretStr | None = None
    # Connections kept open per engine and process (PostgreSQL and SQLite files) ...
    pool_size: int = Field(default=10, ge=1, le=200)
    # ... plus this many more opened under load and closed again when returned.
    max_overflow: int = Field(default=10, ge=0, le=200)
    # Seconds a request waits for a free connection before it gets 503 + Retry-After.
    pool_timeout: float = Field(default=10.0, gt=0)
    # Per-statement timeout (in milliseconds) on PostgreSQL; 0 disables.
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    echo: bool = False
    # Attempts for run_tx() on transient errors (serialization, dropped connection).
    tx_retries: int = Field(default=5, ge=1, le=20)
    # Migrations on PostgreSQL (see ballast_common.db.migrate): seconds a statement waits
    # for a table lock before the migration is rolled back and tried again, so it never
    # queues long in front of the live colour's queries; attempts in all; and the
    # longest a migration statement may run (0: no limit).
    migration_lock_timeout_s: float = Field(default=5.0, gt=0, le=600)
    migration_lock_attempts: int = Field(default=12, ge=1, le=100)
    migration_statement_timeout_s: float = Field(default=60.0, ge=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not _HAS_SQLALCHEMY:
            return value  # the UI's image: no database layer uses it there
        url = _parse_url(value)
        if url is None:
            raise ValueError(
                "not a database URL: use sqlite:///path or postgresql://user@host/db"
            )
        if url.get_backend_name() not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}: use sqlite:/// or postgresql://"
            )
        return value

    @model_validator(mode="after")
    def _password_out_of_url(self) -> DatabaseConfig:
        # A password given inside the URL (environment only: the file refuses it) becomes
        # the secret, so the URL itself is safe to show and to log.
        if not _HAS_SQLALCHEMY:
            return self
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.password is not None:
            if self.password is not None:
                raise ValueError(
                    "the password is given twice: in the URL and in BALLAST_DATABASE__PASSWORD"
                )
            self.password = SecretStr(str(url.password))
            self.url = url._replace(password=None).render_as_string(hide_password=False)
        return self

    def url_with_password(self) -> str:
        """The URL with the secret password filled in (never log this)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if self.password is not None and self.password.get_secret_value():
            url = url.set(password=self.password.get_secret_value())
        return url.render_as_string(hide_password=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


def _parse_url(value: str) -> URL | None:
    if not _HAS_SQLALCHEMY:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(value)
    except ArgumentError:
        return None


class CacheConfig(BaseModel):
    # Default time to live (in seconds) for get_or_compute entries.
    ttl: int = Field(default=3600, ge=1)
    # L1 (in-process) capacity in entries and in (pickled) bytes; LRU beyond either.
    max_entries: int = Field(default=10_000, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # L2: the Redis of `redis_url` unless this names another; none: L1 only.
    redis_url: str | None = None
    # Seconds one process may hold a key's compute lock before another takes over.
    lock_timeout_s: float = Field(default=30.0, gt=0)
    # After a write, how long (ms) to wait for every replica to drop what it busted.
    bust_wait_ms: int = Field(default=50, ge=0, le=10_000)
    # After a Redis error, L1-only for this long before trying Redis again.
    retry_redis_after_s: float = Field(default=5.0, ge=0)


class JobConfig(BaseModel):
    # Celery broker; None means the embedded broker-free transport.
    broker_url: str | None = None
    # Soft time limit (in seconds) of the longest task.
    soft_time_limit: int = Field(default=1800, ge=1)
    concurrency: int = Field(default=2, ge=1)
    # Broker polling (in seconds) of the embedded filesystem transport (Redis pushes).
    polling_interval: float = Field(default=0.05, gt=0, le=5)
    # A running job writes a heartbeat this often (in seconds) ...
    heartbeat_s: float = Field(default=2.0, gt=0)
    # ... and counts as lost (its worker died) after this many seconds without one.
    lease_s: float = Field(default=15.0, gt=0)
    # Progress is written at most this often (in seconds) per job.
    progress_interval_s: float = Field(default=0.5, gt=0)
    # The worker's sweeper (due, dependent, lost and overdue jobs) runs this often.
    sweep_interval_s: float = Field(default=0.5, gt=0)
    # A PENDING job whose message went missing is sent again after this many seconds.
    redispatch_after_s: float = Field(default=300.0, gt=0)
    # Seconds a cancelled job may take to stop on its own before it is terminated.
    cancel_grace_s: float = Field(default=10.0, ge=0)
    # Port of the worker's Prometheus /metrics endpoint (and its /healthz probe); None
    # disables it.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # The queue-depth and jobs-by-status gauges are counted in the database this often
    # (in seconds) by the sweeper, never at scrape time; a scrape serves the last count.
    metrics_refresh_s: float = Field(default=10.0, gt=0)


class DatasetConfig(BaseModel):
    # Largest accepted upload (in megabytes).
    max_upload_mb: float = Field(default=200.0, gt=0)
    # Largest accepted dataset (rows, columns) after parsing.
    max_rows: int = Field(default=5_000_000, ge=1)
    max_columns: int = Field(default=1_000, ge=1)
    # Rows kept on the dataset for the preview table.
    preview_rows: int = Field(default=50, ge=1, le=1000)
    # An Excel workbook (a zip) may unpack to at most this many megabytes in total ...
    max_unpacked_mb: float = Field(default=200.0, gt=0)
    # ... and no large member may be compressed more than this many times (zip bombs).
    max_compression_ratio: float = Field(default=100.0, gt=1)
    # Imports parse and write this many megabytes of table (in memory) at a time.
    chunk_mb: float = Field(default=8.0, gt=0, le=1024)
    # Largest file a browser may upload straight to the object store (presigned
    # multipart, S3 only; in megabytes). S3 allows up to 5 TiB per object.
    max_direct_upload_mb: float = Field(default=51200.0, gt=0, le=5 * 1024 * 1024)
    # Part size of those uploads (in megabytes; S3 needs at least 5 for every part but
    # the last). Larger files get larger parts: an upload has at most 10,000.
    upload_part_mb: int = Field(default=8, ge=5, le=5 * 1024)
    # How long a presigned part URL is valid (in seconds); a browser asks again after.
    upload_url_ttl_s: int = Field(default=900, ge=30, le=7 * 24 * 3600)


class SecurityConfig(BaseModel):
    # Pepper for hashing session tokens (HMAC-SHA256). Env only.
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # A session expires after this many seconds without a request.
    session_idle_timeout_s: int = Field(default=1800, ge=10)
    # ... and this many seconds after login, whatever the activity.
    session_absolute_timeout_s: int = Field(default=43_200, ge=60)
    # Failed logins allowed per username per minute (from any address); one more locks
    # the account for login_backoff_base_s, doubled on each lock, at most
    # login_backoff_max_s -- except from addresses that account logged in from before.
    login_rate_per_minute: int = Field(default=20, ge=1)
    # Failed logins allowed per client address per minute (over every username).
    login_address_rate_per_minute: int = Field(default=100, ge=1)
    # First lock (in seconds) after too many failures; each further lock doubles it ...
    login_backoff_base_s: int = Field(default=60, ge=1)
    # ... up to this many seconds: a lock always ends on its own (no lock-out for good).
    login_backoff_max_s: int = Field(default=900, ge=1)
    # Locks are counted (for the doubling) until this many seconds pass without one.
    login_backoff_memory_s: int = Field(default=3600, ge=1)
    # A successful login makes its address "known" to that account for this many
    # seconds: a lock of the account (not of the address) does not apply there.
    login_known_address_s: int = Field(default=30 * 86_400, ge=0)
    # Threads per process that hash and verify passwords (argon2 is slow on purpose and
    # never runs on the api's event loop); more logins than this wait their turn.
    password_hash_workers: int = Field(default=2, ge=1, le=64)
    # Peers (IP addresses or CIDR networks) whose X-Forwarded-For / X-Forwarded-Proto
    # are believed: the ui pods or the ingress in front of the api. Anyone else's are
    # ignored, so a client cannot choose the address its audit rows and throttling see.
    # In the environment a JSON list: BALLAST_SECURITY__TRUSTED_PROXIES='["10.0.0.0/8"]'.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Strict-Transport-Security: auto sends it on requests that came over TLS (as the
    # trusted proxy says), always on every response, never not at all.
    hsts: Literal["auto", "always", "never"] = "auto"
    # max-age of Strict-Transport-Security (in seconds).
    hsts_max_age_s: int = Field(default=31_536_000, ge=0)
    # Serve /docs, /redoc and /openapi.json; None: on, except when env is prod.
    api_docs: bool | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an IP address or CIDR network"
                ) from None
        return value


class RoleMappingConfig(BaseModel):
    """How an external identity's groups become Ballast roles (OIDC and trusted header)."""

    # Group (or role) name at the identity provider -> Ballast role (viewer, editor,
    # admin). In the environment a JSON object:
    # BALLAST_AUTH__OIDC__GROUP_ROLES='{"ballast-admins": "admin"}'.
    group_roles: dict[str, Literal["viewer", "editor", "admin"]] = Field(
        default_factory=dict
    )
    # Role of a user none of whose groups is mapped; None: such a user is refused.
    default_role: Literal["viewer", "editor", "admin"] | None = None

    def roles_for(self, groups: list[str]) -> list[str]:
        """The Ballast roles of `groups` (sorted), the default role when none is mapped."""
        roles = {self.group_roles[g] for g in groups if g in self.group_roles}
        if not roles and self.default_role is not None:
            roles = {self.default_role}
        return sorted(roles)


class OidcConfig(RoleMappingConfig):
    """Single sign-on through an OpenID Connect provider (authorization code + PKCE).

    The api runs the flow: it builds the authorization URL (state, nonce and PKCE
    verifier sealed into `state`), exchanges the code, verifies the ID token (signature
    against the provider's JWKS, issuer, audience, expiry, nonce) and opens a session.
    """

    enabled: bool = False
    # Issuer URL exactly as the provider names itself (its discovery document must
    # say the same), e.g. https://login.example.com/realms/ballast.
    issuer: str = ""
    client_id: str = ""
    # Confidential clients only; a public client (PKCE alone) leaves it unset.
    # Environment only: BALLAST_AUTH__OIDC__CLIENT_SECRET.
    client_secret: SecretStr | None = None
    # Where the provider sends the browser back: the ui's public URL (its first page
    # finishes the sign-in). Registered at the provider as is.
    redirect_uri: str = ""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    # Claim holding the user's groups or roles: a list or a space/comma separated
    # string; dotted for nested claims (realm_access.roles).
    role_claim: str = "groups"
    # Claims tried in order for the Ballast username (the first one present).
    username_claims: list[str] = Field(
        default_factory=lambda: ["preferred_username", "email", "sub"]
    )
    # Label of the sign-in button.
    display_name: str = "single sign-on"
    # Seconds a started sign-in may take before its state is refused.
    state_ttl_s: int = Field(default=600, ge=30, le=3600)
    # Clock skew (in seconds) allowed on exp / iat / nbf of ID tokens.
    leeway_s: int = Field(default=60, ge=0, le=600)
    # Discovery document and JWKS are fetched again after this many seconds (and the
    # JWKS at once when a token names an unknown key, at most once a minute).
    metadata_ttl_s: int = Field(default=3600, ge=60)

    @model_validator(mode="after")
    def _check_enabled(self) -> OidcConfig:
        if self.enabled:
            missing = [
                name
                for name in ("issuer", "client_id", "redirect_uri")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(
                    "OIDC is enabled but " + ", ".join(missing) + " is not set"
                )
            if "openid" not in self.scopes:
                raise ValueError("scopes must include 'openid'")
        return self


class ProxyAuthConfig(RoleMappingConfig):
    """Trusted-header sign-in behind an authenticating proxy (e.g. oauth2-proxy).

    The headers are believed only from a peer in `security.trusted_proxies`; from anyone
    else they are ignored, logged and audited.
    """

    enabled: bool = False
    user_header: str = "X-Forwarded-User"
    email_header: str = "X-Forwarded-Email"
    # Comma-separated groups.
    groups_header: str = "X-Forwarded-Groups"
    # Display name (optional).
    name_header: str = "X-Forwarded-Preferred-Username"


class AuthConfig(BaseModel):
    # Username + password accounts; False: only single sign-on (OIDC or proxy).
    local_accounts: bool = True
    oidc: OidcConfig = OidcConfig()
    proxy: ProxyAuthConfig = ProxyAuthConfig()


class S3Config(BaseModel):
    # None: use the local directory object store under paths.data_dir.
    endpoint_url: str | None = None
    bucket: str = "ballast"
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    # The S3 address browsers reach (presigned upload URLs are signed for it), e.g.
    # https://s3.example.com; None: endpoint_url.
    public_url: str | None = None
    # Origins (scheme://host[:port]) of the ui allowed to PUT upload parts straight to
    # the bucket: its CORS rule, set when the api starts. Empty: leave the bucket's CORS
    # as it is (configure it on the bucket yourself).
    cors_origins: list[str] = Field(default_factory=list)


class PitrConfig(BaseModel):
    """Point-in-time recovery of a PostgreSQL server with pgBackRest (`ballast backup pitr`).

    The repository is the S3 bucket of `s3` (under `repo_path`) when `s3.endpoint_url` is
    set, else a directory under `paths.backup_path`. pgBackRest speaks only HTTPS to S3.
    """

    stanza: str = Field(default="ballast", pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    # The server's data directory (pg1-path); required by every `pitr` command.
    pg_data: Path | None = None
    pg_port: int = Field(default=5432, ge=1, le=65535)
    # Directory of the server's Unix socket; None: /var/run/postgresql.
    pg_socket_dir: Path | None = None
    pg_user: str = "postgres"
    # The database host's pgBackRest TLS server (`pgbackrest server`), when this
    # process runs elsewhere (a Kubernetes CronJob); None: the data directory is local.
    pg_host: str | None = None
    pg_host_port: int = Field(default=8432, ge=1, le=65535)
    # Client certificate and key this side presents, and the CA of the server's certificate.
    pg_host_cert_file: Path | None = None
    pg_host_key_file: Path | None = None
    pg_host_ca_file: Path | None = None
    # Run pgBackRest and pg_ctl as this OS user when running as root (the data
    # directory's owner); None: as the current user.
    os_user: str | None = None
    # Where `pitr setup` writes pgbackrest.conf (archive_command points at it);
    # None: <paths.data_dir>/pgbackrest/pgbackrest.conf.
    config_file: Path | None = None
    repo_path: str = Field(default="/pgbackrest", pattern=r"^/[A-Za-z0-9._\-/]*$")
    # HTTPS endpoint (https://host[:port]) of the S3 server for pgBackRest; None: s3.endpoint_url.
    s3_endpoint: str | None = None
    verify_tls: bool = True
    # CA bundle that signed the S3 server's certificate; None: the system's.
    ca_file: Path | None = None
    # Full backups kept (older fulls, their diffs and their WAL are expired).
    retention_full: int = Field(default=2, ge=1, le=9_999_999)
    process_max: int = Field(default=2, ge=1, le=64)
    # Encrypt the repository (aes-256-cbc) with this passphrase; None: unencrypted.
    cipher_pass: SecretStr | None = None
    # Seconds a restored copy may take to reach its target and accept connections.
    recovery_timeout_s: int = Field(default=600, ge=1)


class BackupConfig(BaseModel):
    """Snapshots in the object store (`ballast backup ...`)."""

    # Object-store prefix of every backup (backups/<id>/manifest.json ...).
    prefix: str = Field(default="backups", pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")
    # Retention of good backups: the newest per hour / day / ISO week is kept for
    # this many hours / days / weeks. The last good full and every backup a kept
    # incremental depends on are never deleted.
    keep_hourly: int = Field(default=24, ge=0)
    keep_daily: int = Field(default=7, ge=0)
    keep_weekly: int = Field(default=4, ge=0)
    # Directory of pg_dump / pg_restore; None: PATH, then /usr/lib/postgresql/*/bin.
    pg_bindir: Path | None = None
    # Server (URL of its maintenance database) for scratch and new databases;
    # None: the server of `database.url`, database "postgres".
    scratch_url: str | None = None
    # Audit-log ids missing at capture time (transactions not yet committed) are
    # looked for again by later incrementals for this many seconds.
    gap_horizon_s: int = Field(default=3600, ge=0)
    # pg_restore processes for a full (restores and verification): 1 (default) streams
    # the dump straight into one pg_restore; more (0: one per CPU, at most 4) first
    # copies it to a temporary file (TMPDIR needs room for the largest full dump) and
    # checks its checksum there. On 2 cores and a database of one large table, 2 jobs
    # were slower than 1 (the copy, and one table's data loads in one process), so
    # more jobs pay only with many large tables and cores.
    restore_jobs: int = Field(default=1, ge=0, le=32)
    pitr: PitrConfig = PitrConfig()


class PerformanceConfig(BaseModel):
    # Outbox debounce (in milliseconds) before widget values are written to the api.
    debounce_ms: int = Field(default=300, ge=0, le=10_000)
    # Interaction latency target (in milliseconds) for 95 % of interactions.
    interaction_p95_ms: int = Field(default=50, ge=1)
    # Default page size for paginated lists.
    page_size: int = Field(default=25, ge=1, le=500)


class PathsConfig(BaseModel):
    data_dir: Path = Path("./var")
    backup_path: Path = Path("./var/backups")
    log_path: Path = Path("./var/log")


DEFAULT_MAX_BODY_KB = 8192


class ServerConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Server processes (uvicorn workers) in one pod/host; scale out with replicas first.
    workers: int = Field(default=1, ge=1, le=64)
    # Largest JSON request body (KiB) the api reads; larger ones get 413 unread.
    max_json_body_kb: int = Field(default=DEFAULT_MAX_BODY_KB, ge=1, le=1024 * 1024)
    # Port of the Prometheus /metrics endpoint, on `host`, apart from `port` so the
    # Ingress (which routes `port` only) never exposes it; None: no metrics endpoint.
    # The main port answers /metrics with 404.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _metrics_apart(self) -> ServerConfig:
        if self.metrics_port == self.port:
            raise ValueError(f"metrics_port must differ from port ({self.port})")
        return self


class UiServerConfig(ServerConfig):
    # Its own default, kept when only some ui settings are given (BALLAST_UI__HOST).
    port: int = Field(default=8501, ge=1, le=65535)


class OutboundTargetConfig(BaseModel):
    """How Ballast calls one external service (ballast_common.outbound)."""

    # Seconds to connect, and to wait for any read or write of the request.
    connect_timeout_s: float = Field(default=3.0, gt=0, le=300)
    timeout_s: float = Field(default=10.0, gt=0, le=3600)
    # Attempts per call (connection errors, timeouts, 429 and 5xx are retried) ...
    attempts: int = Field(default=3, ge=1, le=20)
    # ... with exponential backoff and full jitter from this base, capped (in seconds).
    backoff_base_s: float = Field(default=0.2, ge=0, le=60)
    backoff_max_s: float = Field(default=5.0, ge=0, le=600)
    # Consecutive failed calls that open the target's circuit breaker ...
    breaker_fail_max: int = Field(default=5, ge=1, le=1000)
    # ... which fails fast for this many seconds, then lets one trial call through.
    breaker_reset_s: float = Field(default=30.0, gt=0, le=86_400)


class OutboundConfig(BaseModel):
    # Settings of every target not named in `targets`.
    default: OutboundTargetConfig = OutboundTargetConfig()
    # Per target (e.g. "webhooks"); BALLAST_OUTBOUND__TARGETS__WEBHOOKS__TIMEOUT_S=5.
    targets: dict[str, OutboundTargetConfig] = Field(default_factory=dict)

    def target(self, name: str) -> OutboundTargetConfig:
        """The settings of target `name` (the default ones unless configured)."""
        return self.targets.get(name, self.default)


class WebhookSourceConfig(BaseModel):
    # Standard Webhooks signing secret ("whsec_" + base64, at least 16 bytes); several
    # separated by spaces while a sender rotates. Environment only:
    # BALLAST_WEBHOOKS__SOURCES__<NAME>__SECRET.
    secret: SecretStr
    # False: answer 404 as if the source did not exist (keeps the secret configured).
    enabled: bool = True

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        for part in value.get_secret_value().split():
            raw = part.removeprefix("whsec_")
            try:
                key = base64.b64decode(raw + "==", validate=False)
            except ValueError:
                key = b""
            if len(key) < 16:
                raise ValueError(
                    "must be a Standard Webhooks secret: whsec_ and base64 of at least 16 bytes"
                )
        if not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value


class WebhooksConfig(BaseModel):
    # Inbound senders by name: the {source} of POST /v1/webhooks/{source}.
    sources: dict[str, WebhookSourceConfig] = Field(default_factory=dict)
    # Largest inbound body (in KiB); larger ones get 413 unread.
    max_body_kb: int = Field(default=256, ge=1, le=64 * 1024)
    # A received webhook id is remembered this long (in seconds): a replay within it is
    # not processed again. At least the scheme's 5-minute timestamp tolerance.
    replay_ttl_s: int = Field(default=7 * 86_400, ge=600)
    # Outbound deliveries: attempts in all, spaced by exponential backoff with full
    # jitter from this base (in seconds), capped at backoff_max_s.
    delivery_attempts: int = Field(default=8, ge=1, le=50)
    delivery_backoff_base_s: float = Field(default=10.0, ge=0)
    delivery_backoff_max_s: float = Field(default=3600.0, ge=0)

    @field_validator("sources")
    @classmethod
    def _check_names(
        cls, value: dict[str, WebhookSourceConfig]
    ) -> dict[str, WebhookSourceConfig]:
        for name in value:
            if not WEBHOOK_SOURCE_NAME.fullmatch(name) or name in RESERVED_SOURCES:
                raise ValueError(
                    f"source name {name!r}: use a-z, 0-9, - and _ (at most 64), not "
                    + ", ".join(sorted(RESERVED_SOURCES))
                )
        return value


# Inbound source names (the path segment) and the ones the admin routes use.
WEBHOOK_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
RESERVED_SOURCES = frozenset({"subscriptions", "deliveries", "events"})


# Dotted paths of every secret field; they may only come from the environment.
SECRET_FIELDS: tuple[tuple[str, ...], ...] = (
    ("database", "password"),
    ("security", "secret_key"),
    ("s3", "secret_access_key"),
    ("backup", "pitr", "cipher_pass"),
    ("auth", "oidc", "client_secret"),
)
# Secret fields of every entry of a mapping (`webhooks.sources.<name>.secret`).
SECRET_MAP_FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("webhooks", "sources"), "secret"),
)


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by BALLAST_CONFIG_FILE; refuses secrets in it."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.data: dict[str, Any] = self._read() if path is not None else {}

    def _read(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {self.path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {self.path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"config file {self.path} is not valid TOML: {exc}"
            ) from None
        for dotted in SECRET_FIELDS:
            node: Any = data
            for part in dotted:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                name = ".".join(dotted)
                env = "BALLAST_" + "__".join(p.upper() for p in dotted)
                raise ConfigError(
                    f"secret {name!r} found in config file {self.path}: secrets come from "
                    f"environment variables only (set {env})"
                )
        for dotted, key in SECRET_MAP_FIELDS:
            node = data
            for part in dotted:
                node = node.get(part) if isinstance(node, dict) else None
            for entry, value in (node or {}).items() if isinstance(node, dict) else ():
                if isinstance(value, dict) and key in value:
                    name = ".".join((*dotted, entry, key))
                    env = "BALLAST_" + "__".join(
                        p.upper() for p in (*dotted, entry, key)
                    )
                    raise ConfigError(
                        f"secret {name!r} found in config file {self.path}: secrets come "
                        f"from environment variables only (set {env})"
                    )
        database = data.get("database")
        if isinstance(database, dict) and isinstance(database.get("url"), str):
            url = _parse_url(
                database["url"]
            )  # an unparsable URL is reported by the model
            if url is not None and url.password:
                raise ConfigError(
                    f"database.url in {self.path} contains a password: put it in "
                    "BALLAST_DATABASE__PASSWORD instead"
                )
        return data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class AppConfig(BaseSettings):
    """Everything Ballast can be configured with.

    Environment variables use the `BALLAST_` prefix and `__` between nested names, e.g.
    `BALLAST_ENV=prod`, `BALLAST_DATABASE__URL=postgresql://app@db/ballast`,
    `BALLAST_SECURITY__SECRET_KEY=...`.
    """

    model_config = SettingsConfigDict(
        env_prefix="BALLAST_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="ignore",
        validate_default=True,
    )

    env: Env = Env.dev
    debug: bool = False
    # offline: the ui keeps working from its journal while the api is away.
    mode: Literal["online", "offline"] = "online"
    theme: Literal["auto", "light", "dark"] = "auto"
    # fast: fewer resamples/approximations; accurate: the full computation.
    compute: Literal["fast", "accurate"] = "fast"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: human-readable on a terminal (make run), one JSON object per line otherwise.
    log_format: Literal["auto", "json", "console"] = "auto"
    redis_url: str | None = None
    # Public base URL of the state API as the ui reaches it.
    api_url: str = "http://127.0.0.1:8000"

    database: DatabaseConfig = DatabaseConfig()
    cache: CacheConfig = CacheConfig()
    jobs: JobConfig = JobConfig()
    datasets: DatasetConfig = DatasetConfig()
    security: SecurityConfig = SecurityConfig()
    auth: AuthConfig = AuthConfig()
    s3: S3Config = S3Config()
    performance: PerformanceConfig = PerformanceConfig()
    paths: PathsConfig = PathsConfig()
    backup: BackupConfig = BackupConfig()
    api: ServerConfig = ServerConfig()
    ui: UiServerConfig = UiServerConfig()
    outbound: OutboundConfig = OutboundConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    features: dict[str, bool] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file is read here, the one place allowed to look at os.environ.
        path = os.environ.get(CONFIG_FILE_ENV)  # noqa: TID251
        toml = _TomlFileSource(settings_cls, Path(path) if path else None)
        return (init_settings, env_settings, toml)

    @model_validator(mode="after")
    def _enforce_secrets(self) -> AppConfig:
        if self.env is Env.dev:
            return self
        problems = []
        key = self.security.secret_key.get_secret_value()
        if key in DEFAULT_SECRETS or len(key) < 16:
            problems.append(
                "BALLAST_SECURITY__SECRET_KEY is missing, a default, or shorter than 16 characters"
            )
        if self.database.is_sqlite:
            problems.append(
                "BALLAST_DATABASE__URL must name a PostgreSQL database outside dev"
            )
        elif self.database.password is not None and (
            self.database.password.get_secret_value() in DEFAULT_SECRETS
        ):
            problems.append("BALLAST_DATABASE__PASSWORD is a default value")
        # Without a key id the object store is reached with the pod's identity (boto3's
        # default credential chain: IRSA, EKS Pod Identity, instance roles): no secret.
        if (
            self.s3.endpoint_url
            and self.s3.access_key_id
            and (
                self.s3.secret_access_key is None
                or self.s3.secret_access_key.get_secret_value() in DEFAULT_SECRETS
            )
        ):
            problems.append(
                "BALLAST_S3__SECRET_ACCESS_KEY is missing or a default value while "
                "BALLAST_S3__ACCESS_KEY_ID is set (unset both to use the pod's identity)"
            )
        oidc = self.auth.oidc
        if (
            oidc.enabled
            and oidc.client_secret is not None
            and oidc.client_secret.get_secret_value() in DEFAULT_SECRETS
        ):
            problems.append("BALLAST_AUTH__OIDC__CLIENT_SECRET is a default value")
        if problems:
            raise ValueError(
                f"refusing to start in {self.env.value}: " + "; ".join(problems)
            )
        return self

    def feature(self, name: str, default: bool = False) -> bool:
        """Whether feature flag `name` is on."""
        return self.features.get(name, default)


def load_config(**overrides: Any) -> AppConfig:
    """Load the configuration from the environment (and BALLAST_CONFIG_FILE).

    Raises:
        ConfigError: one line naming what is wrong (a bad value, a secret in the file,
            a missing or default secret outside dev).
    """
    try:
        return AppConfig(**overrides)
    except SettingsError as exc:  # e.g. BALLAST_FEATURES that is not JSON
        raise ConfigError(f"invalid configuration: {exc}") from None
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            parts.append(f"{loc}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None
