# syntax=docker/dockerfile:1
# One image for every cutout service: the workers, `cutout serve`, Flower and the local API
# server (docker-compose.yml gives each its command). Two stages: the first installs the project
# from its own files into a virtualenv, the second copies only that virtualenv, so no build file,
# pip cache or compiler reaches the image. Secrets are never part of it: they are files that
# Compose mounts under /run/secrets when a container starts (docs/deploy.md).

FROM python:3.12-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config/ config/
COPY picpik/ picpik/
COPY tasks/ tasks/
COPY producers/ producers/
COPY emulator/ emulator/
RUN python -m venv /opt/cutout \
    && /opt/cutout/bin/pip install --no-cache-dir /src

FROM python:3.12-slim-bookworm
# A user of its own, with no login and no password; /data holds the images to read and the
# cutouts written, owned by it so that named volumes mounted there are writable.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin cutout \
    && install -d -o cutout -g cutout /srv/cutout /data/images /data/cutouts
COPY --from=build /opt/cutout /opt/cutout
COPY deploy/flowerconfig.py /srv/cutout/flowerconfig.py
ENV PATH=/opt/cutout/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CUTOUT_FILES_ROOT=/data/images \
    CUTOUT_OUTPUT_DIR=/data/cutouts
WORKDIR /srv/cutout
# Numeric, so that a runtime (Kubernetes runAsNonRoot) can tell it is not root.
USER 10001:10001
# No HEALTHCHECK here: the one image runs four different services, each with its own way to
# tell it is healthy; docker-compose.yml declares one per service.
CMD ["celery", "-A", "tasks", "worker", "--loglevel=INFO"]
