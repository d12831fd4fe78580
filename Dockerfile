# One image for every role. The command picks it:
#   docker run clave                          the monolith (every domain)
#   docker run clave serve --component users  one component: one domain (verify, users,
#                                             threads or posts); --service is its older name
# Settings come from CLAVE_* variables, as anywhere else (README, "Settings").
#
# PYTHON_IMAGE: any Debian-based CPython >= 3.11 image with `python3` on the PATH. The build
# stage and the final stage must use the same one (the virtualenv points at its interpreter).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml README.md routes.toml ./
COPY src ./src
RUN python3 -m venv /opt/clave \
    && /opt/clave/bin/pip install --no-cache-dir . \
    && /opt/clave/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
# A fixed uid, so volumes and ECS know whom to expect; no shell, no password, no sudo.
RUN groupadd --system --gid 10001 clave \
    && useradd --system --uid 10001 --gid clave --home-dir /var/lib/clave --create-home \
        --shell /usr/sbin/nologin clave
COPY --from=build /opt/clave /opt/clave
COPY routes.toml /etc/clave/routes.toml
ENV PATH=/opt/clave/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLAVE_HOST=0.0.0.0 \
    CLAVE_PORT=8000 \
    CLAVE_DATA_DIR=/var/lib/clave \
    CLAVE_ROUTES=/etc/clave/routes.toml
USER 10001:10001
WORKDIR /var/lib/clave
EXPOSE 8000
STOPSIGNAL SIGTERM
# Standard library only (it does not import the app): cheap enough to run every 10 s.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-m", "clave.platform.healthcheck"]
ENTRYPOINT ["clave"]
CMD ["serve"]
