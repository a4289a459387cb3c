# The Lazarus operator image. No torch: the trainer extra is not installed.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md* ./
COPY contract ./contract
COPY store ./store
COPY operator ./operator
COPY trainer_image ./trainer_image
RUN pip install . && rm -rf /src

# Any non-root UID works; the operator writes nothing to disk.
USER 65532:65532
WORKDIR /
ENTRYPOINT ["lazarus-operator"]
