# The Lazarus operator image: `docker build -t lazarus-operator .`
# Base pinned by full tag (3.11.7, the Python this project's tests run on; checked by
# tests/helm/test_images.py). Append @sha256:... once you have pulled it and read its digest.
# BASE: a stand-in with the same Python and Debian where no registry is reachable
# (hack/images/build.sh passes the local stack's own).
ARG BASE=python:3.11.7-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Bytecode pip compiles at install is checked by hash, not by the files' times, so
# two builds write the same .pyc files.
ARG SOURCE_DATE_EPOCH=0

WORKDIR /src
# The operator's dependencies (no torch), each pinned with its files' hashes by
# hack/lock from pyproject.toml: pip refuses anything unpinned or of another hash, so
# two builds of one commit install the same packages. A layer of its own: code changes
# leave it cached.
COPY operator/requirements.lock ./
RUN pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY store ./store
COPY operator ./operator
COPY trainer_image ./trainer_image
# The project itself, no extras, from this source only: nothing more is fetched
# (--no-index), and pip check fails the build if the lock lacks a dependency. The user
# gets a passwd entry: kopf names the operator after it (getpass.getuser() fails for a
# uid without one).
RUN pip install --no-index --no-deps --no-build-isolation . && pip check && rm -rf /src \
 && groupadd --system --gid 65532 lazarus \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lazarus

# Numeric, so that Kubernetes can check runAsNonRoot; the chart runs it with a
# read-only root filesystem (the operator writes nothing to disk).
USER 65532:65532
WORKDIR /
ENTRYPOINT ["lazarus-operator"]
