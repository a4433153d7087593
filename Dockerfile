# syntax=docker/dockerfile:1
# ocrq image: Tesseract + the ocrq wheel (not an editable install) in a venv, run as a non-root user.
#   docker build -t ocrq .                                        CPU image: Tesseract chain, API, beat, Flower
#   docker build --build-arg OCRQ_EXTRAS=transformers -t ocrq-gpu .   adds torch + transformers (the fallback)
# Layers go from least to most often changed: system packages, then the dependencies (read from
# pyproject.toml only, so a code edit does not reinstall them), then the wheel of the code.

FROM python:3.11-slim AS deps
ARG OCRQ_EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ocrq
COPY pyproject.toml /src/pyproject.toml
COPY deploy/requirements_from_pyproject.py /src/deploy/requirements_from_pyproject.py
RUN python /src/deploy/requirements_from_pyproject.py /src/pyproject.toml "$OCRQ_EXTRAS" > /tmp/requirements.txt \
 && /opt/ocrq/bin/pip install -r /tmp/requirements.txt

FROM deps AS wheel
COPY . /src
RUN /opt/ocrq/bin/pip wheel --no-deps -w /wheels /src

FROM python:3.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus \
    tesseract-ocr-osd fonts-dejavu-core qpdf \
 && rm -rf /var/lib/apt/lists/*
# The user the containers run as; compose's `user:` (USERMAP_UID/USERMAP_GID in .env) can pick another
# UID/GID at run time so files in ./results belong to the host user. HOME is writable by any UID.
ARG OCRQ_UID=1000
ARG OCRQ_GID=1000
RUN groupadd --gid "$OCRQ_GID" ocrq \
 && useradd --uid "$OCRQ_UID" --gid "$OCRQ_GID" --home-dir /home/ocrq --create-home ocrq \
 && chmod 1777 /home/ocrq \
 && mkdir -p /data/scans /data/inbox /data/results /data/uploads /hf-cache \
 && chown -R "$OCRQ_UID:$OCRQ_GID" /data /hf-cache
COPY --from=deps /opt/ocrq /opt/ocrq
COPY --from=wheel /wheels /wheels
RUN /opt/ocrq/bin/pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
ENV PATH=/opt/ocrq/bin:$PATH PYTHONUNBUFFERED=1 HOME=/home/ocrq HF_HOME=/hf-cache \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /data
USER ocrq
HEALTHCHECK --interval=30s --timeout=10s --retries=3 CMD ["ocrq", "--version"]
CMD ["ocrq", "--help"]
