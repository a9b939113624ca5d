"""Field-encryption costs against a plain baseline measured in the same run.

* field encrypt / decrypt: the envelope format (AES-256-GCM, header, location-bound AAD,
  base64) with a cached data key, i.e. what a write or read of ``User.phone`` costs per value;
* blind index: HMAC-SHA256 with the per-tenant field key (plus E.164 normalization);
* baseline: building the same stored string without encryption (str + base64 of the
  plaintext), so the numbers read as "cost over doing nothing".
* ORM round trip: loading 200 users with and without an encrypted phone, in-process SQLite.

Usage: .venv/bin/python bench/bench_crypto.py [--n 200000]; writes bench/results/crypto.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kanvaro.crypto import envelope
from kanvaro.crypto.blind_index import BlindIndexer, normalize_phone


def _per_op_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(min(1000, n)):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return round(best * 1e6, 3)


def micro(n: int) -> dict[str, float]:
    aead = AESGCM(os.urandom(32))
    header = envelope.Header(uuid.uuid4(), 1)
    where = envelope.FieldLocation(uuid.uuid4(), "users", "phone", str(uuid.uuid4()))
    phone = "+4915112345678"
    stored = envelope.seal(aead, header, phone, where)
    indexer = BlindIndexer(os.urandom(32))
    tenant = uuid.uuid4()
    return {
        "baseline_plain_encode_us": _per_op_us(
            lambda: f"{header.text()}:{base64.urlsafe_b64encode(phone.encode()).decode()}", n
        ),
        "field_encrypt_us": _per_op_us(lambda: envelope.seal(aead, header, phone, where), n),
        "field_decrypt_us": _per_op_us(lambda: envelope.open_(aead, stored, where), n),
        "blind_index_us": _per_op_us(
            lambda: indexer.digest(tenant, "users.phone", "+4915112345678"), n
        ),
        "blind_index_with_e164_normalize_us": _per_op_us(
            lambda: indexer.digest(tenant, "users.phone", normalize_phone(phone)),
            max(n // 20, 1000),
        ),
    }


async def orm_round_trip(rows: int = 200, rounds: int = 20) -> dict[str, float]:
    from sqlalchemy import select

    from kanvaro.bootstrap import bootstrap
    from kanvaro.config import Settings
    from kanvaro.identity.models import User
    from kanvaro.identity.users import create_user
    from kanvaro.migrate import upgrade
    from kanvaro.security.passwords import PasswordPolicy
    from kanvaro.services import Services

    folder = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    upgrade(url)
    settings = Settings(
        data_dir=folder,
        database_url=url,
        key_maintenance_interval_seconds=0,
        signing_key_reload_seconds=0,
    ).prepare()
    services = Services.build(settings)
    await services.startup()
    try:
        result = await bootstrap(
            services,
            tenant_name="Bench",
            email="b@kanvaro.example",
            password="Tr4ck!Velocity-Quartz",
        )
        tid = uuid.UUID(result.tenant_id)
        async with services.db.session(tenant_id=tid) as session:
            for i in range(rows):
                await create_user(
                    session,
                    services.hasher,
                    tenant_id=tid,
                    email=f"u{i}@kanvaro.example",
                    first_name="A",
                    last_name="B",
                    role=None,
                    password=None,
                    policy=PasswordPolicy(),
                    phone=f"+4930{i:07d}" if i % 2 else None,
                )

        async def load(with_phone: bool) -> float:
            best = float("inf")
            for _ in range(rounds):
                start = time.perf_counter()
                async with services.db.session(tenant_id=tid) as session:
                    query = select(User).where(
                        User.phone_encrypted.is_not(None)
                        if with_phone
                        else User.phone_encrypted.is_(None)
                    )
                    users = (await session.execute(query)).scalars().all()
                    _ = [u.phone for u in users]
                best = min(best, (time.perf_counter() - start) / max(len(users), 1))
            return round(best * 1e6, 2)

        plain = await load(False)
        encrypted = await load(True)
        return {
            "orm_load_user_without_phone_us": plain,
            "orm_load_user_with_encrypted_phone_us": encrypted,
        }
    finally:
        await services.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    results = micro(args.n)
    results.update(asyncio.run(orm_round_trip()))
    out = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "per_operation": results,
        "ratios": {
            "encrypt_over_baseline": round(
                results["field_encrypt_us"] / results["baseline_plain_encode_us"], 2
            ),
            "decrypt_over_baseline": round(
                results["field_decrypt_us"] / results["baseline_plain_encode_us"], 2
            ),
            "orm_load_encrypted_over_plain": round(
                results["orm_load_user_with_encrypted_phone_us"]
                / results["orm_load_user_without_phone_us"],
                2,
            ),
        },
    }
    path = Path(__file__).parent / "results" / "crypto.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
