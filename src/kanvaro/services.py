"""The long-lived parts of a running instance, built once from Settings by ``create_app``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kanvaro.config import Settings
from kanvaro.crypto.keyring import Keyring
from kanvaro.crypto.providers import make_provider
from kanvaro.db import Database
from kanvaro.identity.keys import load_keys
from kanvaro.identity.mfa.policy import new_cache as new_mfa_policy_cache
from kanvaro.identity.principals import PrincipalCache
from kanvaro.identity.sessions.activity import ActivityRecorder
from kanvaro.identity.sessions.policy import PolicyCache
from kanvaro.jobs import Clock, JobRegistry, SystemClock
from kanvaro.notify.configured import Choice, ConfiguredMailer
from kanvaro.notify.email import Mailer, OutboxMailer
from kanvaro.notify.smtp import SmtpMailer
from kanvaro.ratelimit.guard import RateLimitGuard, new_rate_limit_guard
from kanvaro.security.client_ip import Network, parse_networks
from kanvaro.security.passwords import Argon2Params, PasswordHasher
from kanvaro.security.pinning import parse_pins
from kanvaro.security.throttle import LoginThrottle, make_storage
from kanvaro.security.tokens import TokenError, TokenService

if TYPE_CHECKING:
    from kanvaro.audit.runtime import AuditRuntime


def _environment_mailer(settings: Settings) -> Choice:
    """What mail uses when no relay is stored: ``KANVARO_SMTP_*``, else the outbox folder."""
    if not settings.smtp_host:
        return Choice("outbox", OutboxMailer(settings.data_dir / "outbox", settings.smtp_from))
    password = settings.smtp_password
    return Choice(
        "environment",
        SmtpMailer(
            settings.smtp_host,
            settings.smtp_resolved_port,
            settings.smtp_from,
            security=settings.smtp_mode,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            ca_file=settings.smtp_ca_file,
            timeout=settings.smtp_timeout_seconds,
            pins=settings.tls_pins,
        ),
    )


@dataclass
class Services:
    settings: Settings
    db: Database
    tokens: TokenService
    hasher: PasswordHasher
    throttle: LoginThrottle
    mailer: Mailer
    keyring: Keyring
    trusted_proxies: tuple[Network, ...] = field(default_factory=tuple)
    principals: PrincipalCache = field(default_factory=lambda: PrincipalCache(0.5))
    session_policies: PolicyCache = field(default_factory=lambda: PolicyCache(0.5))
    mfa_policies: PolicyCache = field(default_factory=lambda: new_mfa_policy_cache(0.5))
    audit: AuditRuntime | None = None  # set by startup()
    # Time as the periodic jobs see it: tests inject a kanvaro.jobs.ManualClock.
    clock: Clock = field(default_factory=SystemClock)
    jobs: JobRegistry = field(init=False)
    activity: ActivityRecorder = field(init=False)
    rate_limits: RateLimitGuard = field(init=False)
    started: bool = False
    _last_key_reload: float = 0.0
    key_reload_min_interval: float = 5.0

    def __post_init__(self) -> None:
        self.jobs = JobRegistry(clock=self.clock, db=self.db)
        self.activity = ActivityRecorder(self.db)
        self.rate_limits = new_rate_limit_guard(self.settings, self.db)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None) -> Services:
        storage = make_storage(settings.redis_url)
        db = Database(
            settings.resolved_database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        mailer = ConfiguredMailer(
            db,
            _environment_mailer(settings),
            ca_file=settings.smtp_ca_file,
            timeout=settings.smtp_timeout_seconds,
            pins=settings.tls_pins,
        )
        # A malformed KANVARO_TLS_PINS stops the start (its ValueError names the entry),
        # rather than the first connection to a pinned peer.
        parse_pins(settings.tls_pins)
        assert settings.master_key is not None, "Settings.prepare() was not called"
        keyring = Keyring(
            make_provider(settings), master=settings.master_key.get_secret_value().encode()
        )
        keyring.enabled_fields = frozenset(settings.encrypted_fields)
        # Every session of this database carries the keyring: encrypted fields use it.
        db.sessionmaker.configure(info={"keyring": keyring})
        return cls(
            settings=settings,
            db=db,
            keyring=keyring,
            tokens=TokenService(
                issuer=settings.issuer,
                audience=settings.audience,
                access_ttl=settings.access_token_ttl_seconds,
                refresh_ttl=settings.refresh_token_ttl_seconds,
            ),
            hasher=PasswordHasher(
                Argon2Params(
                    memory_kib=settings.argon2_memory_kib,
                    time_cost=settings.argon2_time_cost,
                    parallelism=settings.argon2_parallelism,
                )
            ),
            throttle=LoginThrottle(
                storage,
                per_account=settings.login_max_failures_per_account,
                per_ip=settings.login_max_failures_per_ip,
                window_seconds=settings.login_failure_window_seconds,
                account_ceiling=settings.login_account_ceiling,
                max_delay=settings.login_max_delay_seconds,
                slow_seconds=settings.login_slow_seconds,
                notice_seconds=settings.login_notice_seconds,
                fail_mode=settings.rate_limit_fail_mode_auth,
                refresh_per_minute=settings.refresh_per_client_per_minute,
                reset_per_address_per_hour=settings.password_reset_per_address_per_hour,
                reset_per_client_per_hour=settings.password_reset_per_client_per_hour,
            ),
            mailer=mailer,
            trusted_proxies=parse_networks(settings.trusted_proxies),
            principals=PrincipalCache(settings.principal_cache_seconds),
            session_policies=PolicyCache(settings.principal_cache_seconds),
            mfa_policies=new_mfa_policy_cache(settings.principal_cache_seconds),
            clock=clock or SystemClock(),
        )

    @property
    def master_key(self) -> bytes:
        assert self.settings.master_key is not None, "Settings.prepare() was not called"
        return self.settings.master_key.get_secret_value().encode()

    async def reload_keys(self) -> None:
        async with self.db.session(all_tenants=True) as session:
            signer, verifiers = await load_keys(session, self.master_key)
        self.tokens.load_keys(signer, verifiers)
        self._last_key_reload = time.monotonic()

    async def verify_token(self, token: str, use: str) -> dict[str, Any]:
        """Verify a token; on an unknown ``kid`` reload the signing keys once (another instance
        may have rotated) and retry. Such reloads are rate-limited (``key_reload_min_interval``),
        so a flood of forged kids cannot turn into a flood of database reads."""
        try:
            return self.tokens.verify(token, use)
        except TokenError as exc:
            recent = time.monotonic() - self._last_key_reload < self.key_reload_min_interval
            if str(exc) != "unknown signing key" or recent:
                raise
        await self.reload_keys()
        return self.tokens.verify(token, use)

    async def startup(self) -> None:
        if self.started:
            return
        from kanvaro.crypto.maintenance import check_encrypted_fields, register_jobs
        from kanvaro.notify.invitations import warn_about_default_public_url

        check_encrypted_fields(self.settings.encrypted_fields)
        warn_about_default_public_url(self.settings)
        await self.reload_keys()
        self.jobs = JobRegistry(clock=self.clock, db=self.db)  # a restart registers afresh
        register_jobs(self)
        from kanvaro.identity.sessions import monitor

        monitor.register_jobs(self)
        from kanvaro.identity.sso import jobs as sso_jobs

        sso_jobs.register_jobs(self)
        from kanvaro.compliance import retention

        retention.register_jobs(self)
        from kanvaro.compliance.reports import worker as report_worker

        report_worker.register_jobs(self)
        from kanvaro.audit import runtime as audit_runtime

        self.audit = await audit_runtime.start(self)
        await self.rate_limits.start()
        self.jobs.start()
        self.started = True

    async def shutdown(self) -> None:
        await self.jobs.stop()
        from kanvaro import background

        await background.stop()
        await self.activity.flush()
        await self.rate_limits.close()
        from kanvaro.audit import runtime as audit_runtime

        await audit_runtime.stop(self.audit)
        self.audit = None
        await self.db.dispose()
        self.started = False
