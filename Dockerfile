# One image for every cleanroom node: party nodes and the coordinator differ only in their command and mounts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cleanroom ./cleanroom
COPY transport ./transport
COPY party ./party
COPY coordinator ./coordinator
COPY cleanroom_cli ./cleanroom_cli
RUN pip install --no-cache-dir . && useradd --system --uid 10001 cleanroom
USER cleanroom
EXPOSE 50051
ENTRYPOINT ["cleanroom"]
CMD ["--help"]
