"""Database: typed SQLAlchemy 2 models, engine factory and migrations."""

from ocrq.db.models import Attempt, Base, Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory

__all__ = ["Attempt", "Base", "Document", "Job", "Page", "make_engine", "make_session_factory"]
