# The consortium operator (kopf). Built by images/build.sh like node.Dockerfile: local
# debootstrap base, host-built wheels, no network.
ARG BASE
FROM ${BASE}
# Dependencies first (a layer that changes only when they do), then the project.
COPY deps/ /tmp/deps/
RUN set -eux; \
    python3 -m venv /opt/consortium; \
    /opt/consortium/bin/pip install --no-cache-dir --no-index --disable-pip-version-check /tmp/deps/*.whl; \
    rm -rf /tmp/deps; \
    groupadd --gid 10001 consortium; \
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/consortium --shell /usr/sbin/nologin consortium; \
    install -d -o 10001 -g 10001 -m 0750 /var/lib/consortium
COPY project/ /tmp/project/
RUN /opt/consortium/bin/pip install --no-cache-dir --no-index --no-deps --disable-pip-version-check /tmp/project/*.whl \
    && rm -rf /tmp/project
ENV PATH=/opt/consortium/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/consortium
ENTRYPOINT ["/usr/bin/tini", "--", "consortium-operator"]
