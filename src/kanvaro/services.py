"""The long-lived parts of a running instance, built once from Settings by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field

from kanvaro.config import Settings
from kanvaro.db import Database
from kanvaro.identity.keys import load_keys
from kanvaro.notify.email import Mailer, OutboxMailer, SmtpMailer
from kanvaro.security.client_ip import Network, parse_networks
from kanvaro.security.passwords import Argon2Params, PasswordHasher
from kanvaro.security.throttle import LoginThrottle, make_storage
from kanvaro.security.tokens import TokenService


@dataclass
class Services:
    settings: Settings
    db: Database
    tokens: TokenService
    hasher: PasswordHasher
    throttle: LoginThrottle
    mailer: Mailer
    trusted_proxies: tuple[Network, ...] = field(default_factory=tuple)
    started: bool = False

    @classmethod
    def build(cls, settings: Settings) -> Services:
        storage = make_storage(settings.redis_url)
        if settings.smtp_host:
            mailer: Mailer = SmtpMailer(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from,
                starttls=settings.smtp_starttls,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value()
                if settings.smtp_password
                else None,
            )
        else:
            mailer = OutboxMailer(settings.data_dir / "outbox", settings.smtp_from)
        return cls(
            settings=settings,
            db=Database(settings.resolved_database_url),
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
            ),
            mailer=mailer,
            trusted_proxies=parse_networks(settings.trusted_proxies),
        )

    @property
    def master_key(self) -> bytes:
        assert self.settings.master_key is not None, "Settings.prepare() was not called"
        return self.settings.master_key.get_secret_value().encode()

    async def reload_keys(self) -> None:
        async with self.db.session(all_tenants=True) as session:
            signer, verifiers = await load_keys(session, self.master_key)
        self.tokens.load_keys(signer, verifiers)

    async def startup(self) -> None:
        if self.started:
            return
        await self.reload_keys()
        self.started = True

    async def shutdown(self) -> None:
        await self.db.dispose()
        self.started = False
