# One image for every service; the command picks which one a container runs:
# `serve NAME`, `migrate --only NAME`, `status`, `dlq list`.
# Build: `make image` (docker build -t nameko-mesh:VERSION .), then push it and
# name it in deploy/k8s/kustomization.yaml (docs "Running on Kubernetes").

# --- build: the package and its pinned dependencies, into a virtualenv ---
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
WORKDIR /src
COPY setup.cfg pyproject.toml README.md config.yaml gateway.py ./
COPY contracts ./contracts
COPY mesh ./mesh
COPY services ./services
RUN /venv/bin/pip install .

# --- run: the virtualenv and config only; no compiler, no pip cache ---
FROM python:3.11-slim AS run
# a numeric user, so Kubernetes can check runAsNonRoot; it owns nothing in the
# image: what it writes goes to /data and /tmp (emptyDir volumes on Kubernetes)
ARG UID=10001
COPY --from=build /venv /venv
COPY config.yaml /app/config.yaml
RUN mkdir -p /data && chown ${UID}:${UID} /data
ENV PATH=/venv/bin:$PATH MESH_DATA_DIR=/data PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER ${UID}:${UID}
# the gateway also needs GATEWAY_HOST=0.0.0.0 in a container
ENTRYPOINT ["mesh", "--config", "/app/config.yaml"]
CMD ["serve", "gateway"]
