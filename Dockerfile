# syntax=docker/dockerfile:1
# dunningops: the daemon (both cycles, the console, the API, /healthz and /metrics on port 8780).
#
#   docker build -t dunningops .
#   docker run --rm -p 127.0.0.1:8780:8780 -v "$PWD/config:/config:ro" \
#     -e DUNNINGOPS_DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/dunningops dunningops
#
# See docs/deploy.md (and compose.yaml for the daemon with its PostgreSQL).

# python:3.11.14-slim-bookworm, pinned by the digest of its multi-platform index so that a
# rebuild gets the same base; bump tag and digest together.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- stage 1: the wheel, built from the source tree ------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
# src/dunningops/example_config is a link to ../../config: both are needed for the example in the wheel.
COPY config ./config
COPY src ./src
RUN python -m build --wheel --outdir /dist .

# --- stage 2: the wheel installed, nothing else of the build -----------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DUNNINGOPS_CONFIG=/config

# What WeasyPrint needs to print letters as PDF: Pango (text layout), HarfBuzz's subsetter (small
# embedded fonts) and a font. Versions are bookworm's; bump them with the base image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0=1.50.12+ds-1 \
        libpangoft2-1.0-0=1.50.12+ds-1 \
        libharfbuzz-subset0=6.0.0+dfsg-3 \
        fonts-dejavu-core=2.37-6 \
    && rm -rf /var/lib/apt/lists/*

# A system user with a fixed uid, so that a mounted volume's owner is predictable.
# Relative paths in the config (a maildir, the default SQLite file) resolve beside /config,
# i.e. under /.dunningops: the one directory the user may write, a volume.
RUN useradd --system --no-log-init --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin dunningops \
    && mkdir -p /config /.dunningops \
    && chown dunningops:dunningops /.dunningops

COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/dunningops-*.whl \
    && rm -rf /tmp/dist

USER 10001:10001
WORKDIR /.dunningops
VOLUME ["/.dunningops"]
EXPOSE 8780

# /healthz answers 200 when the store answers, 503 otherwise (urlopen raises on 503: exit 1).
# No curl in the slim image: Python's own urllib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8780/healthz', timeout=4).status != 200)"]

CMD ["dunningops", "daemon", "--host", "0.0.0.0"]
