# One image for every service; the command picks which one a container runs.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md config.yaml gateway.py ./
COPY contracts ./contracts
COPY mesh ./mesh
COPY services ./services
RUN pip install --no-cache-dir . && useradd --create-home mesh && mkdir -p /data \
    && chown mesh /data
USER mesh
ENV MESH_DATA_DIR=/data
# e.g. `mesh serve inventory`; the gateway also needs GATEWAY_HOST=0.0.0.0
ENTRYPOINT ["mesh", "--config", "/app/config.yaml"]
CMD ["serve", "gateway"]
