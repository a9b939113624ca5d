"""``aws-kms``: every KEK is a symmetric AWS KMS key, found by its alias (boto3).

* Names: ``alias/<prefix>instance``, ``alias/<prefix>tenant-<id>``, ``alias/<prefix>user-<id>``.
  A missing tenant or user KEK is created on first use (``CreateKey`` + ``CreateAlias``, with
  automatic yearly rotation enabled); two processes racing keep the alias that won and schedule
  the loser's key for deletion.
* Wrapping is ``Encrypt`` with an ``EncryptionContext`` naming purpose, tenant and data key;
  ``Decrypt`` names the expected key and context, so a wrapped key from another KEK, tenant or
  row is refused (KMS answers ``InvalidCiphertextException``). The keyring makes the data key
  itself (``os.urandom``), so ``GenerateDataKey`` is not needed.
* Rotation: ``RotateKeyOnDemand`` adds new key material under the same key id (KMS keeps the
  old material for decryption), then ``ReEncrypt`` re-wraps inside KMS: the data key never
  reaches Kanvaro during a re-wrap.
* Shredding: the alias is deleted at once (nothing unwraps through Kanvaro from then on) and
  the key is scheduled for deletion after ``KANVARO_AWS_KMS_DELETION_DAYS`` (7 to 30, AWS's
  bounds). While pending, the key is disabled for every use; AWS can cancel the deletion within
  the window (``CancelKeyDeletion``), after it the key material is gone, backups included.

Credentials come from boto3's usual chain (environment, shared config, instance or task role);
none is configured in Kanvaro. Errors never carry AWS's request ids, ARNs or credentials.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import structlog

from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable, ProviderError
from kanvaro.crypto.providers import INSTANCE_KEK, WrapContext, check_kek
from kanvaro.security.pinning import parse_pins

if TYPE_CHECKING:
    from kanvaro.config import Settings

PREFIX = "aws-kms:v1:"
log = structlog.get_logger("kanvaro.keys")
# KMS error codes that mean the key is gone or going (shredded).
_GONE = {"NotFoundException", "KMSInvalidStateException"}
_REFUSED = {"InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException"}


class AwsKmsProvider:
    name = "aws-kms"

    def __init__(
        self,
        *,
        region: str,
        alias_prefix: str = "kanvaro-",
        endpoint_url: str | None = None,
        deletion_days: int = 30,
        client: Any = None,
        credentials: dict[str, str] | None = None,
        verify: bool | str = True,
        pins: dict[str, frozenset[str]] | None = None,
    ) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.session.Session(**(credentials or {})).client(
                "kms",
                region_name=region,
                endpoint_url=endpoint_url,
                verify=verify,
                config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}),
            )
            if pins:
                from kanvaro.crypto.providers.transport import pin_boto_client

                pin_boto_client(client, pins, verify if isinstance(verify, str) else None)
        self._kms = client
        self.region = region
        self.alias_prefix = alias_prefix
        self.deletion_days = deletion_days

    def __repr__(self) -> str:
        return f"AwsKmsProvider(region={self.region!r}, prefix={self.alias_prefix!r})"

    def _alias(self, kek: str) -> str:
        return f"alias/{self.alias_prefix}{check_kek(kek)}"

    def key_identifier(self, kek: str) -> str:
        return f"aws-kms:{self.region}/{self._alias(kek)}"

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._kms, method)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _GONE:
                raise KeyDestroyed(
                    f"aws-kms: {what}: the KMS key does not exist or is pending deletion ({code})"
                ) from None
            if code in _REFUSED:
                raise KeyUnavailable(
                    f"aws-kms: {what}: refused ({code}): wrong key or encryption context"
                ) from None
            raise ProviderError(f"aws-kms: {what}: {code or 'error'}") from None
        except BotoCoreError as exc:  # endpoint unreachable, timeouts, no credentials
            if "TLS pin mismatch" in str(exc):
                raise ProviderError(
                    f"aws-kms: {what}: the endpoint's key is not one of its pins (KANVARO_TLS_PINS)"
                ) from None
            raise ProviderError(f"aws-kms: {what}: {type(exc).__name__}") from None

    def ensure(self, kek: str) -> None:
        alias = self._alias(kek)
        try:
            self._call("describe key", "describe_key", KeyId=alias)
            return
        except KeyDestroyed:
            pass
        created = self._call(
            "create key",
            "create_key",
            Description=f"Kanvaro KEK {kek}",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[{"TagKey": "kanvaro:kek", "TagValue": kek}],
        )
        key_id = created["KeyMetadata"]["KeyId"]
        try:
            self._call("create alias", "create_alias", AliasName=alias, TargetKeyId=key_id)
        except ProviderError:
            # Another process created the alias first: use its key, retire ours.
            self._call("describe key", "describe_key", KeyId=alias)
            self._call(
                "schedule deletion",
                "schedule_key_deletion",
                KeyId=key_id,
                PendingWindowInDays=self.deletion_days,
            )
            return
        self._call("enable rotation", "enable_key_rotation", KeyId=key_id)

    def wrap(self, kek: str, dek: bytes, context: WrapContext) -> str:
        r = self._call(
            "encrypt",
            "encrypt",
            KeyId=self._alias(kek),
            Plaintext=dek,
            EncryptionContext=context.as_dict(),
        )
        return PREFIX + base64.b64encode(r["CiphertextBlob"]).decode()

    def _blob(self, wrapped: str) -> bytes:
        if not wrapped.startswith(PREFIX):
            raise KeyUnavailable("wrapped key was not made by the aws-kms provider")
        return base64.b64decode(wrapped.removeprefix(PREFIX))

    def unwrap(self, kek: str, wrapped: str, context: WrapContext) -> bytes:
        r = self._call(
            "decrypt",
            "decrypt",
            KeyId=self._alias(kek),
            CiphertextBlob=self._blob(wrapped),
            EncryptionContext=context.as_dict(),
        )
        return r["Plaintext"]

    def rewrap(self, kek: str, wrapped: str, context: WrapContext) -> str:
        alias = self._alias(kek)
        r = self._call(
            "re-encrypt",
            "re_encrypt",
            CiphertextBlob=self._blob(wrapped),
            SourceKeyId=alias,
            SourceEncryptionContext=context.as_dict(),
            DestinationKeyId=alias,
            DestinationEncryptionContext=context.as_dict(),
        )
        return PREFIX + base64.b64encode(r["CiphertextBlob"]).decode()

    def _key_id(self, kek: str) -> str:
        meta = self._call("describe key", "describe_key", KeyId=self._alias(kek))["KeyMetadata"]
        return meta["KeyId"]

    def rotate(self, kek: str) -> None:
        # The rotation calls take a key id or ARN, not an alias (AWS's API reference).
        try:
            self._call("rotate", "rotate_key_on_demand", KeyId=self._key_id(kek))
        except ProviderError as exc:
            if "LimitExceededException" not in str(exc):
                raise
            # AWS allows a few on-demand rotations per key (10); automatic yearly rotation
            # carries on, and the re-wrap still moves every data key to the newest material.
            log.warning("kms_on_demand_rotation_limit", kek=kek)

    def destroy(self, kek: str) -> None:
        if kek == INSTANCE_KEK:
            raise ProviderError("the instance KEK cannot be destroyed")
        alias = self._alias(kek)
        try:
            key_id = self._key_id(kek)
        except KeyDestroyed:
            return  # already shredded
        self._call("delete alias", "delete_alias", AliasName=alias)
        self._call(
            "schedule deletion",
            "schedule_key_deletion",
            KeyId=key_id,
            PendingWindowInDays=self.deletion_days,
        )


def from_settings(settings: Settings) -> AwsKmsProvider:
    if not settings.aws_region:
        raise ProviderError("key_provider=aws-kms needs KANVARO_AWS_REGION")
    return AwsKmsProvider(
        region=settings.aws_region,
        alias_prefix=settings.aws_kms_alias_prefix,
        endpoint_url=settings.aws_kms_endpoint,
        deletion_days=settings.aws_kms_deletion_days,
        verify=str(settings.aws_kms_ca_bundle) if settings.aws_kms_ca_bundle else True,
        pins=parse_pins(settings.tls_pins) or None,
    )
