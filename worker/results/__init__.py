"""Result files written from the database: per-document Markdown and JSON, and ``batch.json``."""
