"""The REST service: the FastAPI app, its routes and schemas, API keys, uploads, webhooks and metrics."""
