"""The model registry: which OCR models ocrq can drive and what each needs (data in ``registry.toml``)."""
