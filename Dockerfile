FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus \
    tesseract-ocr-osd fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
# OCRQ_EXTRAS=transformers,quantization for the serve-hf image (torch, transformers, bitsandbytes).
ARG OCRQ_EXTRAS=""
RUN pip install --no-cache-dir -e ".${OCRQ_EXTRAS:+[$OCRQ_EXTRAS]}"
ENV PYTHONUNBUFFERED=1
