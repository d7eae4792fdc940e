# The consortium ledger node. Built by images/build.sh: BASE is a debootstrap'd Debian
# bookworm (python3.11) imported locally, and the context holds the project's wheels
# built on the host, so this build needs no network and pulls nothing.
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
EXPOSE 7050
ENTRYPOINT ["/usr/bin/tini", "--", "consortium-node"]
CMD ["dev", "--data-dir", "/var/lib/consortium/data", "--listen", "0.0.0.0:7050"]
