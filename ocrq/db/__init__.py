"""Database: typed SQLAlchemy 2 models, engine factory and migrations."""

from ocrq.db.models import ApiKey, Attempt, Base, Document, Job, Page, WebhookDelivery
from ocrq.db.session import make_engine, make_session_factory

__all__ = [
    "ApiKey",
    "Attempt",
    "Base",
    "Document",
    "Job",
    "Page",
    "WebhookDelivery",
    "make_engine",
    "make_session_factory",
]
