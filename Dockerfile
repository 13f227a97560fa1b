# Ballast images: one Dockerfile, one target per service, built from the repository root.
#   podman build --target api -t ballast-api .        (or: make images)
# Targets: api (also runs the migration hook Job: `ballast db migrate`), ui, jobs, backup.
#
# Every target installs exactly one workspace package (and ballast-common) from uv.lock into
# /opt/venvs/<service>, non-editable, so the runtime stage carries the virtualenv and nothing else:
# no sources, no uv, no build tools, no secrets (configuration comes from env at run time).
#
# The Python base is a build argument: an official Python slim image by default. The build
# and runtime stages must use the same base, because the virtualenv links to its interpreter.
ARG BASE_IMAGE=python:3.11-slim
# Ref: https://docs.astral.sh/uv/guides/integration/docker/#installing-uv
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------------------
# build: the workspace metadata and the lock file; the per-service stages below add sources.
FROM ${BASE_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# Ref: https://docs.astral.sh/uv/guides/integration/docker/#compiling-bytecode
# Bytecode at build time: the root filesystem is read-only at run time.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
# Only for a TLS-intercepting proxy: the path of a CA bundle mounted for RUN steps
# (`podman build -v host.crt:/run/host-ca.crt:ro`; scripts/images.sh does it). Build stages
# are never shipped, so the arguments do not reach the runtime images. UV_NATIVE_TLS=1 makes
# uv read the platform store, which honours SSL_CERT_FILE.
ARG SSL_CERT_FILE
ARG UV_NATIVE_TLS
WORKDIR /src
# Every member's pyproject.toml: uv resolves the whole workspace even for one package.
COPY pyproject.toml uv.lock VERSION ./
COPY libs/common/pyproject.toml libs/common/
COPY services/api/pyproject.toml services/api/
COPY services/ui/pyproject.toml services/ui/
COPY services/jobs/pyproject.toml services/jobs/
COPY services/backup/pyproject.toml services/backup/

# One virtualenv per service, /opt/venvs/<service>, all in this one stage (one shared build and
# one place for the build arguments). Two uv steps, as in the uv docs: third-party
# dependencies first (a layer that survives source edits), then the workspace packages.
# Ref: https://docs.astral.sh/uv/guides/integration/docker/#intermediate-layers
RUN --mount=type=cache,target=/root/.cache/uv \
    for svc in api ui jobs backup; do \
        UV_PROJECT_ENVIRONMENT=/opt/venvs/$svc \
            uv sync --frozen --no-dev --no-install-workspace --package ballast-$svc || exit 1; \
    done
COPY libs/common/src libs/common/src
COPY services/api/src services/api/src
COPY services/ui/src services/ui/src
COPY services/jobs/src services/jobs/src
COPY services/backup/src services/backup/src
# --no-editable: the packages are copied into the virtualenv, so no source tree ships.
RUN --mount=type=cache,target=/root/.cache/uv \
    for svc in api ui jobs backup; do \
        UV_PROJECT_ENVIRONMENT=/opt/venvs/$svc \
            uv sync --frozen --no-dev --no-editable --package ballast-$svc || exit 1; \
    done

# ---------------------------------------------------------------------------------------
# runtime: the base image plus an unprivileged user. The numeric UID lets Kubernetes check
# runAsNonRoot; the chart sets the same IDs.
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 ballast \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin ballast
# HOME=/tmp: Streamlit and friends write dot-directories under HOME; in the cluster /tmp is an
# emptyDir and the root filesystem is read-only. The data dir is a second emptyDir (or volume).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    BALLAST_LOG_FORMAT=json \
    BALLAST_PATHS__DATA_DIR=/var/lib/ballast
WORKDIR /var/lib/ballast
RUN chown 10001:10001 /var/lib/ballast
USER 10001:10001

FROM runtime AS api
# Same path as in the build stage: the virtualenv's scripts name their interpreter by path.
COPY --from=build /opt/venvs/api /opt/venvs/api
ENV PATH=/opt/venvs/api/bin:$PATH
ENV BALLAST_API__HOST=0.0.0.0 BALLAST_API__PORT=8000
EXPOSE 8000
CMD ["python", "-m", "ballast_api"]

FROM runtime AS ui
# Streamlit's settings come on its command line from ballast_ui.__main__ (no config file).
WORKDIR /opt/ballast-ui
# Same path as in the build stage: the virtualenv's scripts name their interpreter by path.
COPY --from=build /opt/venvs/ui /opt/venvs/ui
ENV PATH=/opt/venvs/ui/bin:$PATH
ENV BALLAST_UI__HOST=0.0.0.0 BALLAST_UI__PORT=8501
EXPOSE 8501
CMD ["python", "-m", "ballast_ui"]

# The Celery worker: `ballast jobs worker` (the chart passes queues and concurrency). SIGTERM
# starts Celery's warm shutdown: running tasks finish, no new ones start.
FROM runtime AS jobs
# Same path as in the build stage: the virtualenv's scripts name their interpreter by path.
COPY --from=build /opt/venvs/jobs /opt/venvs/jobs
ENV PATH=/opt/venvs/jobs/bin:$PATH
CMD ["python", "-m", "ballast_jobs", "worker"]

# Backups: `ballast backup create|list|verify|restore|drill|exporter` (CronJobs and the exporter
# in the chart). Full snapshots are pg_dump custom-format archives: the image carries the
# PostgreSQL client tools of the base's Debian release (a pg_dump at least as new as the server)
# and pgBackRest for `ballast backup pitr` (point-in-time recovery through WAL archiving).
FROM runtime AS backup
# PG_MAJOR: the PostgreSQL major version of the servers this image backs up (e.g. 16), so
# pg_dump/pg_restore are never older than the server. Empty: the client of the base image's
# Debian release. A major that release does not ship needs the PGDG apt repository
# (apt.postgresql.org) in the base image. The backup commands check the tools against the
# server at start and name the build argument when they are too old.
ARG PG_MAJOR=""
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client${PG_MAJOR:+-$PG_MAJOR}" pgbackrest \
    && rm -rf /var/lib/apt/lists/* \
    && if [ -n "$PG_MAJOR" ]; then \
         case "$(pg_dump --version)" in \
           *"(PostgreSQL) ${PG_MAJOR}."*) ;; \
           *) echo "pg_dump is not PostgreSQL ${PG_MAJOR}: $(pg_dump --version)" >&2; exit 1 ;; \
         esac; \
       fi
USER 10001:10001
# Same path as in the build stage: the virtualenv's scripts name their interpreter by path.
COPY --from=build /opt/venvs/backup /opt/venvs/backup
ENV PATH=/opt/venvs/backup/bin:$PATH
CMD ["ballast", "backup", "--help"]
