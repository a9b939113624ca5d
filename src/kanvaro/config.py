"""One typed Settings object, read from the environment (``KANVARO_*``) and passed in.

Every secret also accepts ``KANVARO_<NAME>_FILE``: the value is read from that file, which is
how container orchestrators hand secrets over. In production a missing or placeholder secret
stops the server with a message naming the variable; in development the secrets are generated
once into the data directory (mode 0600) and reused on every start.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDERS = frozenset(
    {"", "changeme", "change-me", "secret", "password", "placeholder", "todo", "xxx", "dev"}
)

# Secrets that must exist, and how a development instance generates one.
REQUIRED_SECRETS: dict[str, int] = {"master_key": 32}


# Every setting that holds a secret (each also read from KANVARO_<NAME>_FILE).
SECRET_NAMES = (
    "master_key", "smtp_password", "vault_token", "metrics_token", "sms_http_auth_header",
    "azure_client_secret",
)  # fmt: skip


class KeyProviderName(StrEnum):
    local = "local"
    vault = "vault"
    aws_kms = "aws-kms"
    azure_keyvault = "azure-keyvault"


class SmsProvider(StrEnum):
    http = "http"  # a provider's HTTP API (KANVARO_SMS_HTTP_*)
    outbox = "outbox"  # files in <data_dir>/outbox: development


class Environment(StrEnum):
    development = "development"
    production = "production"


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message names the variable."""


class SmtpSecurity(StrEnum):
    starttls = "starttls"  # a plain connection upgraded before anything is sent (port 587)
    tls = "tls"  # TLS from the first byte (port 465)
    none = "none"  # no encryption: loopback relays only when credentials are sent


SMTP_DEFAULT_PORTS = {SmtpSecurity.starttls: 587, SmtpSecurity.tls: 465, SmtpSecurity.none: 25}


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal. Other names are not resolved: what a name
    resolves to can change, so only a literal proves the connection stays on this machine."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KANVARO_", extra="ignore", frozen=False)

    env: Environment = Environment.development
    data_dir: Path = Path(".kanvaro")
    database_url: str | None = None
    # Connections per process (PostgreSQL): a fixed pool by default. An overflow connection is
    # closed when returned to a full pool, and opening one (TCP, TLS attempt, type
    # introspection, the RLS setting) costs more than the request that needed it: under a
    # steady load above the kept size, 20 + 10 opened and closed connections all the time.
    db_pool_size: int = Field(default=30, ge=1, le=500)
    db_max_overflow: int = Field(default=0, ge=0, le=500)
    redis_url: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    # Secrets (each also from KANVARO_<NAME>_FILE).
    master_key: SecretStr | None = None

    # Tokens.
    issuer: str = "kanvaro"
    audience: str = "kanvaro-api"
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    refresh_token_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=300, le=90 * 24 * 3600)
    # How long a process may answer from its copy of a session's principal (0 = never):
    # another instance refuses a revoked session at most this long after the revocation.
    principal_cache_seconds: float = Field(default=0.5, ge=0, le=1.0)
    # How often the session monitor ends idle and expired sessions (shared job; 0 = off).
    session_sweep_seconds: int = Field(default=300, ge=0, le=24 * 3600)
    # The audit sequencer's periodic sweep: the bound on how long an entry whose after-commit
    # kick was lost (a crash) stays pending.
    audit_sweep_seconds: int = Field(default=10, ge=1, le=3600)
    # How long the sequencer waits after a commit for more to join one sequencing transaction
    # (PostgreSQL; 0 = none). The delay until an entry has its sequence number grows by it.
    audit_sequence_window_ms: int = Field(default=20, ge=0, le=1000)

    # Password hashing (OWASP 2024/2025: argon2id m=19 MiB, t=2, p=1 is the floor).
    argon2_memory_kib: int = Field(default=19 * 1024, ge=19 * 1024)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)

    # HTTP.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str = "http://localhost:8000"
    # Refuse internal mail domains (corp.local, *.internal, *.lan) for new accounts.
    email_deliverable_only: bool = False

    # Sign-in throttling (docs/security-model.md "Sign-in throttling"): free attempts per
    # (account, client) inside the window, then delays doubling up to login_max_delay_seconds;
    # a device that signed in before counts as a client of its own. Never a lock.
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=100, ge=1)  # attempts, successes included
    login_failure_window_seconds: int = Field(default=15 * 60, ge=1)
    login_max_delay_seconds: int = Field(default=15 * 60, ge=1, le=24 * 3600)
    # Attempts on one account by all its unknown clients per window; past it they share one
    # attempt per login_slow_seconds, and the owner is mailed (once per notice period).
    login_account_ceiling: int = Field(default=50, ge=0)  # 0 = no ceiling
    login_slow_seconds: int = Field(default=30, ge=1, le=3600)
    login_notice_seconds: int = Field(default=24 * 3600, ge=60)
    # Refused refreshes (forged, unknown, spent tokens) per client address (IPv6 by /64) per
    # minute; past it they are answered 429. A refresh that succeeds is not counted.
    refresh_per_client_per_minute: int = Field(default=300, ge=1)
    # Password reset: mails per address and requests per client per hour; a link's lifetime.
    password_reset_per_address_per_hour: int = Field(default=3, ge=1)
    password_reset_per_client_per_hour: int = Field(default=20, ge=1)
    password_reset_minutes: int = Field(default=30, ge=5, le=24 * 60)

    # Rate limiting (docs/admin-guide.md "Rate limiting"); 0 turns a limit off. Global counts
    # every request of the instance, per user a signed-in user's, per IP a client's (an IPv6
    # client by its /64). Rules per endpoint pattern and role: the admin API.
    rate_limit_enabled: bool = True
    rate_limit_global_per_minute: int = Field(default=0, ge=0)
    rate_limit_global_per_hour: int = Field(default=0, ge=0)
    rate_limit_per_user_per_minute: int = Field(default=1200, ge=0)
    rate_limit_per_user_per_hour: int = Field(default=30000, ge=0)
    rate_limit_per_ip_per_minute: int = Field(default=3000, ge=0)
    # Rules from configuration, in addition to the admin API's: a JSON list of objects with
    # endpointPattern, requestsPerMinute and optionally method, burstAllowance, perUser, role.
    rate_limit_rules: str = "[]"
    # When the counter store (Redis) fails: authentication endpoints refuse (closed), the rest
    # go on unlimited (open). Each choice is logged.
    rate_limit_fail_mode_auth: Literal["closed", "open"] = "closed"
    rate_limit_fail_mode_api: Literal["closed", "open"] = "open"
    # Repeated violations block the client: this many minutes with a refusal inside an hour
    # block it for block_minutes, doubled on each further block within a day (at most a day).
    rate_limit_block_after_violations: int = Field(default=5, ge=0)
    rate_limit_block_minutes: int = Field(default=5, ge=1, le=24 * 60)
    # Seed 004's "no limits for Super Admin", as an opt-in.
    rate_limit_exempt_super_admin: bool = False
    # Which header a trusted proxy's client address comes in: X-Forwarded-For or RFC 7239's
    # Forwarded. One of them only: a proxy that rewrites one may pass the other through.
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    # Instance-wide IP lists (CIDR, comma-separated); tenants add their own through the API.
    ip_deny_list: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ip_exempt_list: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Sign-in risk (docs/security-model.md "Sign-in risk"): a MaxMind-format (GeoIP2 or
    # GeoLite2, City or Country) database file. Unset: no places, so no new-country and no
    # impossible-travel checks. A replaced file is picked up at the next sign-in.
    geoip_database: Path | None = None

    # WebAuthn and passkeys (issue 11.4). The relying party ID is a registrable domain (never
    # an IP address): unset, the host of KANVARO_PUBLIC_URL; the expected origin is the public
    # URL's. A legacy U2F app id (the AppID extension) lets keys registered through the old
    # U2F API still sign in; unset, none is offered.
    webauthn_rp_id: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+$", max_length=253)
    webauthn_rp_name: str = Field(default="Kanvaro", min_length=1, max_length=100)
    webauthn_u2f_appid: str | None = Field(default=None, pattern=r"^https://\S+$")

    # SSO domain verification (docs/admin-guide.md "Verified domains"): the resolvers asked
    # for the ``_kanvaro-challenge`` TXT record (IP addresses; unset, the system's from
    # /etc/resolv.conf), their port, the lookup's time limit, how often verified domains are
    # checked again (shared job; 0 = off) and after how many failed checks in a row a
    # domain loses its verification.
    dns_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dns_port: int = Field(default=53, ge=1, le=65535)
    dns_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    sso_domain_recheck_seconds: int = Field(default=24 * 3600, ge=0)
    sso_domain_max_failures: int = Field(default=3, ge=1, le=100)

    # Time entries: the dates one may log time for (docs/admin-guide.md "Time entries").
    time_entry_min_date: date = date(2000, 1, 1)
    time_entry_max_days_ahead: int = Field(default=366, ge=0, le=100 * 366)

    # Mail (docs/admin-guide.md "Mail"). A relay stored with `kanvaro mail set` wins over
    # these; with neither, mail goes to the outbox folder. The CA file and the timeout apply
    # to both.
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)  # unset: by security
    smtp_from: str = "kanvaro@localhost"
    smtp_security: SmtpSecurity | None = None  # unset: starttls if smtp_starttls, else none
    smtp_starttls: bool = False  # the older switch, kept: the same as security=starttls
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: Path | None = None  # trust only this CA (PEM), not the system's
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    invitation_ttl_hours: int = Field(default=72, ge=1)

    # SMS codes (MFA). Unset: the outbox in development, no SMS at all in production (the
    # outbox there only when set explicitly). The template is JSON whose strings may hold
    # {to} and {text}; the values are JSON-escaped into them. The auth header ("Name: value",
    # or a bare value for Authorization) is a secret.
    sms_provider: SmsProvider | None = None
    sms_http_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    sms_http_auth_header: SecretStr | None = None
    sms_http_template: str = '{"to": "{to}", "text": "{text}"}'
    sms_http_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # Audit log and SIEM forwarding (docs/admin-guide.md "Audit log").
    audit_checkpoint_interval_seconds: int = Field(default=3600, ge=0)  # 0: no periodic job
    siem_syslog_udp: str | None = Field(default=None, pattern=r"^\S+:\d{1,5}$")  # host:port
    siem_syslog_tcp: str | None = Field(default=None, pattern=r"^\S+:\d{1,5}$")  # host:port
    siem_webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    siem_queue_size: int = Field(default=1000, ge=1, le=1_000_000)

    # Compliance (docs/admin-guide.md "Compliance"): where retention archives go (default
    # <data_dir>/archive), and how often the retention job runs (0: never on its own).
    archive_dir: Path | None = None
    retention_interval_seconds: int = Field(default=24 * 3600, ge=0)
    # Compliance reports are generated in the background right after they are asked for; this
    # sweep (shared: once across instances) picks up those whose process died or restarted.
    report_sweep_interval_seconds: int = Field(default=60, ge=0)

    # Keys and encryption (see docs/security-model.md "Keys and encryption").
    key_provider: KeyProviderName = KeyProviderName.local
    keystore_dir: Path | None = None  # local provider's per-user KEKs; default <data_dir>/keystore
    vault_addr: str | None = None
    vault_token: SecretStr | None = None
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "kanvaro"
    vault_user_key_prefix: str = "kanvaro-user-"
    vault_tenant_key_prefix: str = "kanvaro-tenant-"
    vault_ca_file: Path | None = None  # a private CA for an https:// Vault
    # aws-kms (credentials from boto3's own chain: environment, shared config, instance role)
    aws_region: str | None = None
    aws_kms_endpoint: str | None = Field(default=None, pattern=r"^https?://\S+$")  # VPC endpoint
    aws_kms_ca_bundle: Path | None = None
    aws_kms_alias_prefix: str = Field(default="kanvaro-", pattern=r"^[a-zA-Z0-9/_-]{0,100}$")
    aws_kms_deletion_days: int = Field(default=30, ge=7, le=30)  # AWS's pending window bounds
    # azure-keyvault (client credentials when the secret is set, else the managed identity)
    azure_vault_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    azure_tenant_id: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: SecretStr | None = None
    azure_key_prefix: str = Field(default="kanvaro-", pattern=r"^[a-zA-Z0-9-]{0,40}$")
    azure_purge_on_shred: bool = True
    key_rotation_days: int = Field(default=90, ge=0)  # 0 turns automatic rotation off
    reencrypt_batch_size: int = Field(default=500, ge=1, le=10_000)
    reencrypt_pause_seconds: float = Field(default=0.0, ge=0)
    key_maintenance_interval_seconds: int = Field(default=300, ge=0)  # 0: no background job
    signing_key_reload_seconds: int = Field(default=60, ge=0)
    encrypted_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["users.phone", "users.ssn"]
    )
    pii_redaction: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["email", "phone", "ssn", "first_name", "last_name"]
    )

    # TLS (kanvaro serve --tls-cert/--tls-key). OpenSSL cipher string for TLS 1.2; TLS 1.3
    # suites are fixed by OpenSSL and all modern.
    tls_ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!RSA:!DSS"
    # certPinning of outbound TLS: host=pin-sha256|pin,... (security/pinning.py)
    tls_pins: str = Field(default="", pattern=r"^[A-Za-z0-9.:_=|,/+ -]*$")
    # Key-exchange groups offered (OpenSSL names): Mozilla "intermediate" (crypto/tls.py).
    tls_groups: str = Field(
        default="X25519:P-256:P-384", pattern=r"^[A-Za-z0-9_-]+(:[A-Za-z0-9_-]+)*$"
    )

    # Serving (kanvaro serve; docs/deployment.md). Workers unset: 1 in development, one per
    # usable core in production. A stopping worker drains its requests this long at most.
    workers: int | None = Field(default=None, ge=1, le=256)
    graceful_shutdown_seconds: int = Field(default=25, ge=1, le=3600)

    # Prometheus metrics at /metrics (docs/deployment.md "Metrics"): off unless enabled; a
    # scrape needs the bearer token, unless it comes from an explicitly allowed network.
    metrics_enabled: bool = False
    metrics_token: SecretStr | None = None
    metrics_anonymous_cidrs: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator(
        "cors_origins",
        "trusted_proxies",
        "encrypted_fields",
        "pii_redaction",
        "metrics_anonymous_cidrs",
        "ip_deny_list",
        "ip_exempt_list",
        "dns_nameservers",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("geoip_database")
    @classmethod
    def _geoip_readable(cls, value: Path | None) -> Path | None:
        # Configured but unreadable would silently drop two risk checks: refuse to start.
        if value is not None and not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError(f"KANVARO_GEOIP_DATABASE: cannot read {value}")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("KANVARO_CORS_ORIGINS must list origins; '*' is refused")
        return value

    @field_validator("dns_nameservers")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(
                    f"KANVARO_DNS_NAMESERVERS: {item!r} is not an IP address"
                ) from None
        return value

    @field_validator("metrics_anonymous_cidrs")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network (CIDR)") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """Fill every ``<name>`` secret from ``KANVARO_<NAME>_FILE`` when only that is set."""
        if not isinstance(data, dict):
            return data
        for name in SECRET_NAMES:
            path = os.environ.get(f"KANVARO_{name.upper()}_FILE")
            if path and not data.get(name) and not os.environ.get(f"KANVARO_{name.upper()}"):
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(
                        f"KANVARO_{name.upper()}_FILE: cannot read {path}: {exc.strerror}"
                    ) from None
        return data

    @model_validator(mode="after")
    def _smtp_consistent(self) -> Settings:
        if self.smtp_starttls and self.smtp_security not in (None, SmtpSecurity.starttls):
            raise ConfigError(
                "KANVARO_SMTP_STARTTLS=true contradicts "
                f"KANVARO_SMTP_SECURITY={self.smtp_security.value}: set only one"
            )
        if self.smtp_host and self.smtp_username and self.smtp_password is None:
            raise ConfigError("KANVARO_SMTP_USERNAME needs KANVARO_SMTP_PASSWORD (or _FILE)")
        plaintext = self.smtp_mode is SmtpSecurity.none
        host = self.smtp_host
        if host and self.smtp_username and plaintext and not is_loopback_host(host):
            raise ConfigError(
                "KANVARO_SMTP_USERNAME is set but KANVARO_SMTP_SECURITY is none: the "
                "password would cross the network unencrypted; set KANVARO_SMTP_SECURITY "
                "to starttls or tls (plaintext is accepted for a loopback host only)"
            )
        ca_file = self.smtp_ca_file
        if ca_file is not None and not (ca_file.is_file() and os.access(ca_file, os.R_OK)):
            raise ConfigError(f"KANVARO_SMTP_CA_FILE: cannot read {ca_file}")
        return self

    @model_validator(mode="after")
    def _sms_consistent(self) -> Settings:
        if self.sms_provider is not SmsProvider.http:
            return self
        from urllib.parse import urlsplit

        if not self.sms_http_url:
            raise ConfigError("KANVARO_SMS_PROVIDER=http needs KANVARO_SMS_HTTP_URL")
        host = urlsplit(self.sms_http_url).hostname or ""
        if self.sms_http_url.startswith("http:") and not is_loopback_host(host):
            raise ConfigError("KANVARO_SMS_HTTP_URL must be https (http for a loopback host only)")
        check_sms_template(self.sms_http_template)
        return self

    @property
    def sms_transport(self) -> SmsProvider | None:
        """The SMS sender in use: None (no SMS) in production unless one is set."""
        if self.sms_provider is None and not self.is_production:
            return SmsProvider.outbox
        return self.sms_provider

    @property
    def smtp_mode(self) -> SmtpSecurity:
        """The security of the environment's relay, ``KANVARO_SMTP_STARTTLS`` included."""
        if self.smtp_security is not None:
            return self.smtp_security
        return SmtpSecurity.starttls if self.smtp_starttls else SmtpSecurity.none

    @property
    def smtp_resolved_port(self) -> int:
        return self.smtp_port or SMTP_DEFAULT_PORTS[self.smtp_mode]

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'kanvaro.db').resolve()}"

    def prepare(self) -> Settings:
        """Check secrets (production) or create and load them (development); returns self."""
        if self.is_production:
            problems = secret_problems(self)
            if problems:
                raise ConfigError("; ".join(problems) + "; production refuses to start")
            if not self.database_url:
                raise ConfigError("KANVARO_DATABASE_URL is required in production")
            return self
        # 0700: it holds the SQLite database (password hashes, the audit log) and secrets.
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, size in REQUIRED_SECRETS.items():
            if getattr(self, name) is None:
                setattr(self, name, SecretStr(_dev_secret(self.data_dir, name, size)))
        return self


def check_sms_template(template: str) -> None:
    """A JSON object or array whose strings hold ``{to}`` and ``{text}``; ConfigError if not."""
    import json

    try:
        parsed = json.loads(template)
    except ValueError:
        raise ConfigError("KANVARO_SMS_HTTP_TEMPLATE is not valid JSON") from None
    if not isinstance(parsed, dict | list):
        raise ConfigError("KANVARO_SMS_HTTP_TEMPLATE must be a JSON object or array")
    for placeholder in ("{to}", "{text}"):
        if placeholder not in template:
            raise ConfigError(f"KANVARO_SMS_HTTP_TEMPLATE needs the placeholder {placeholder}")


def secret_problems(settings: Settings) -> list[str]:
    """Every required secret that is missing, a placeholder or too short, by variable name.

    Our ``validateSecrets`` (seed 000): it names variables and never includes a value.
    """
    required: dict[str, int] = {"master_key": 32}
    if settings.key_provider is KeyProviderName.vault:
        required["vault_token"] = 8
        if not settings.vault_addr:
            return [
                *_check(settings, required),
                "KANVARO_VAULT_ADDR is required for key_provider=vault",
            ]
    if settings.key_provider is KeyProviderName.aws_kms and not settings.aws_region:
        return [
            *_check(settings, required),
            "KANVARO_AWS_REGION is required for key_provider=aws-kms",
        ]
    if settings.key_provider is KeyProviderName.azure_keyvault:
        if not settings.azure_vault_url:
            return [
                *_check(settings, required),
                "KANVARO_AZURE_VAULT_URL is required for key_provider=azure-keyvault",
            ]
        if settings.azure_client_secret is not None:
            required["azure_client_secret"] = 8
    if settings.smtp_username:
        required["smtp_password"] = 1
    if settings.sms_http_auth_header is not None:
        required["sms_http_auth_header"] = 1
    # Metrics without a token are readable only from the allowed networks; a token that is
    # set must be a real one.
    if settings.metrics_enabled and (
        settings.metrics_token is not None or not settings.metrics_anonymous_cidrs
    ):
        required["metrics_token"] = 32
    return _check(settings, required)


def _check(settings: Settings, required: dict[str, int]) -> list[str]:
    problems = []
    for name, min_length in required.items():
        var = f"KANVARO_{name.upper()}"
        value = getattr(settings, name)
        if value is None or value.get_secret_value().strip().lower() in PLACEHOLDERS:
            problems.append(f"{var} (or {var}_FILE) is missing or a placeholder")
        elif len(value.get_secret_value()) < min_length:
            problems.append(f"{var} must be at least {min_length} characters")
    return problems


def _dev_secret(data_dir: Path, name: str, size: int) -> str:
    """Read a generated development secret, creating it (0600) on first use."""
    path = data_dir / "secrets" / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(size)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (a second worker, the CLI) was first: use its
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return value


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides).prepare()
