# The Lazarus operator image: `docker build -t lazarus-operator .`
# Base pinned by full tag (3.11.7, the Python this project's tests run on; checked by
# tests/helm/test_images.py). Append @sha256:... once you have pulled it and read its digest.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY store ./store
COPY operator ./operator
COPY trainer_image ./trainer_image
# No extras: the operator's dependencies only, no torch.
RUN pip install . && rm -rf /src

# Numeric, so that Kubernetes can check runAsNonRoot; the chart runs it with a
# read-only root filesystem (the operator writes nothing to disk).
USER 65532:65532
WORKDIR /
ENTRYPOINT ["lazarus-operator"]
