# syntax=docker/dockerfile:1
# Kanvaro container image: two stages, so that compilers and headers never reach production.
#
#   docker build -t kanvaro .
#   docker run --rm -v kanvaro-data:/var/lib/kanvaro \
#     -e KANVARO_DATABASE_URL=postgresql+asyncpg://... -e KANVARO_MASTER_KEY_FILE=/run/secrets/mk \
#     --entrypoint kanvaro kanvaro migrate          # once per release
#   docker run -d -p 8000:8000 --read-only --tmpfs /tmp -v kanvaro-data:/var/lib/kanvaro \
#     -e KANVARO_DATABASE_URL=... -e KANVARO_MASTER_KEY_FILE=/run/secrets/mk kanvaro

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: build tools, wheels, one virtualenv -------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Compilers only for dependencies that ship no wheel for this platform; they stay here.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
# The lock first (when present), so the dependency layer is cached across source changes.
COPY pyproject.toml README.md requirements.lock* ./
RUN python -m venv /opt/kanvaro \
    && /opt/kanvaro/bin/pip install --upgrade pip \
    && if [ -f requirements.lock ]; then /opt/kanvaro/bin/pip install -r requirements.lock; fi
COPY src ./src
# pip compiles the bytecode now, so a read-only container never needs to write it; pip itself
# is not needed at run time.
RUN /opt/kanvaro/bin/pip install . \
    && /opt/kanvaro/bin/pip uninstall -y pip

# --- runtime: the slim base, security updates, the virtualenv, a fixed non-root user --------
FROM ${PYTHON_IMAGE} AS runtime

# Security updates of the base, and tini as PID 1 (forwards SIGTERM, reaps zombies).
RUN apt-get update \
    && apt-get upgrade -y \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so that volume ownership and runAsUser policies are predictable.
RUN groupadd --system --gid 10001 kanvaro \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kanvaro \
       --no-create-home --shell /usr/sbin/nologin kanvaro \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/kanvaro

COPY --from=builder /opt/kanvaro /opt/kanvaro

# Read-only friendly: no bytecode written at run time; all state lives in the data volume.
ENV PATH=/opt/kanvaro/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KANVARO_ENV=production \
    KANVARO_DATA_DIR=/var/lib/kanvaro

VOLUME ["/var/lib/kanvaro"]
WORKDIR /var/lib/kanvaro
USER 10001:10001
EXPOSE 8000

# No curl in the image: the interpreter that is already there does the probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["tini", "--", "kanvaro", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8000"]
