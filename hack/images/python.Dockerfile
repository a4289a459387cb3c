# A local stand-in for python:3.11.7-slim-bookworm, for machines without an image
# registry (hack/images/build.sh): the local Debian bookworm base image
# (hack/node/setup.sh: python3 3.11) plus pip, which installs into /usr/local as the
# official image's does. Debian marks its Python "externally managed" (PEP 668); an
# image's system Python is the image's to manage, so the marker goes.
ARG BASE=lazarus.local/base:bookworm
FROM ${BASE}
RUN apt-get -o APT::Sandbox::User=root update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root install -y -qq \
      --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && rm -f /usr/lib/python3.*/EXTERNALLY-MANAGED \
 && ln -sf python3 /usr/bin/python
CMD ["python3"]
