"""Create Django's tables (auth) and one user; print an access token for it as JSON.

Run: ``python -m bench.baselines.drf.prepare`` with the ``BENCH_*`` variables of settings.py.
"""

from __future__ import annotations

import json
import os
import secrets


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baselines.drf.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    call_command("migrate", database="default", verbosity=0, interactive=False)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.set_password(secrets.token_urlsafe(16))  # never signs in: the token is minted here
    user.save()
    print(json.dumps({"accessToken": str(AccessToken.for_user(user))}))


if __name__ == "__main__":
    main()
