# The Lazarus operator image: `docker build -t lazarus-operator .`
# Base pinned by full tag (3.11.7, the Python this project's tests run on; checked by
# tests/helm/test_images.py). Append @sha256:... once you have pulled it and read its digest.
# BASE: a stand-in with the same Python and Debian where no registry is reachable
# (hack/images/build.sh passes the local stack's own).
ARG BASE=python:3.11.7-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY store ./store
COPY operator ./operator
COPY trainer_image ./trainer_image
# No extras: the operator's dependencies only, no torch. The user gets a passwd entry:
# kopf names the operator after it (getpass.getuser() fails for a uid without one).
RUN pip install . && rm -rf /src \
 && groupadd --system --gid 65532 lazarus \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lazarus

# Numeric, so that Kubernetes can check runAsNonRoot; the chart runs it with a
# read-only root filesystem (the operator writes nothing to disk).
USER 65532:65532
WORKDIR /
ENTRYPOINT ["lazarus-operator"]
