# One image for every cleanroom node: a party node and the coordinator differ only in command, mounts and
# secrets. Built by scripts/build_image.sh, which first makes the base image BASE (a minimal Debian bookworm
# from debootstrap with python3: no registry needed) and the wheelhouse build/wheelhouse/
# (requirements.txt and wheels from PyPI for pyproject.toml's dependencies, downloaded on the host: no
# network here).
ARG BASE=cleanroom-base:bookworm-r2

# Builder: the venv /opt/cleanroom with the dependencies (binary wheels only, nothing compiled) and, apart
# from it, the project in /opt/cleanroom-app (so a code change rebuilds only that small part). pip lives in
# its own venv /opt/pip, which the final image never gets; the base has no pip, ensurepip or compiler.
FROM ${BASE} AS builder
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# The wheelhouse's requirements.txt is pyproject.toml's [project] dependencies (checked below), so this layer
# is rebuilt only when they change.
COPY build/wheelhouse/ /wheelhouse/
RUN python3 -m venv --without-pip /opt/pip \
 && /opt/pip/bin/python "$(ls /wheelhouse/pip-*.whl | sort -V | tail -n 1)/pip" install -q pip \
 && python3 -m venv --without-pip /opt/cleanroom \
 && /opt/pip/bin/pip --python /opt/cleanroom/bin/python install -q --only-binary=:all: \
      -r /wheelhouse/requirements.txt \
 && find /opt/cleanroom/lib/python3.11/site-packages -depth -type d -name tests -exec rm -rf {} + \
 && echo /opt/cleanroom-app >/opt/cleanroom/lib/python3.11/site-packages/cleanroom-app.pth
COPY pyproject.toml README.md /src/
COPY cleanroom /src/cleanroom
COPY transport /src/transport
COPY party /src/party
COPY coordinator /src/coordinator
COPY cleanroom_cli /src/cleanroom_cli
# The project (pure Python, built with setuptools from the wheelhouse); `cleanroom` runs the venv's python.
RUN python3 -c 'import tomllib, sys; wanted = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; \
      have = open("/wheelhouse/requirements.txt").read().split("\n")[:-1]; \
      sys.exit(None if have == wanted["dependencies"] else "stale wheelhouse: run scripts/build_image.sh")' \
 && /opt/pip/bin/pip --python /opt/cleanroom/bin/python install -q --no-deps \
      --target /opt/cleanroom-app /src \
 && /opt/cleanroom-app/bin/cleanroom --help >/dev/null

# Final image: the base, the venv, the project, an unprivileged user, private volumes.
FROM ${BASE}
# /state (ledger, reveal record, audit log), /results (delivered files) and /out (the coordinator's job
# record) are mount points for named volumes: a new, empty volume takes the directory's owner and mode
# 0700.
RUN groupadd --system --gid 10001 cleanroom \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin cleanroom \
 && mkdir -p /config /data /state /results /out \
 && chown 10001:10001 /state /results /out \
 && chmod 0700 /state /results /out
COPY --from=builder /opt/cleanroom /opt/cleanroom
COPY --from=builder /opt/cleanroom-app /opt/cleanroom-app
ENV PATH=/opt/cleanroom-app/bin:/opt/cleanroom/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051
# A party node's gRPC health over mutual TLS, with the address, id and certificates from its party.toml.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["cleanroom", "health", "--config", "/config/party.toml", "--service", "transport.v1.PartyService"]
ENTRYPOINT ["cleanroom"]
CMD ["party", "serve", "--config", "/config/party.toml"]
