# One image for every Shouwang service; docker-compose picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shouwang shouwang
COPY config config
COPY ingest ingest
COPY detectors detectors
COPY alerting alerting
COPY console console
COPY simulators simulators
RUN pip install . && useradd --system --uid 10001 shouwang \
    && mkdir -p /var/lib/shouwang && chown shouwang /var/lib/shouwang
USER shouwang
ENTRYPOINT ["shouwang"]
CMD ["--help"]
