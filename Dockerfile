# syntax=docker/dockerfile:1
# authz: the container image. Build: docker build -t authz:0.1.0 .
# Run:   docker run --read-only --tmpfs /tmp -v $PWD/config/authz.yaml:/etc/authz/authz.yaml:ro -p 9191:9191 authz:0.1.0
# Entry point `authz serve` (config from $AUTHZ_CONFIG), health check `authz health` (grpc.health.v1).
# Validated without a Docker engine by tests/test_deploy_compose.py (see docs/deploy.md): never built here.

# ---- build: the authz wheel and the wheels of its dependencies
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY authz ./authz
RUN pip wheel --wheel-dir /wheels .

# ---- runtime: the wheels installed, no build tools, a non-root user, a read-only root filesystem possible
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    AUTHZ_CONFIG=/etc/authz/authz.yaml
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels authz \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin authz
COPY config/authz.yaml /etc/authz/authz.yaml
USER 10001:10001
# 9191 gRPC ext_authz + health, 9192 HTTP ext_authz (when server.http_listen is set), 9300 admin API (admin.listen)
EXPOSE 9191 9192 9300
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["authz", "health"]
ENTRYPOINT ["authz"]
CMD ["serve"]
