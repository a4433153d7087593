"""Result files written from the database: per-document Markdown and JSON, ``batch.json``, and the
formats beyond them (plain text, searchable PDF, ALTO XML, layout pictures).

Every extra format reads the same page words (:mod:`ocrq.worker.results.words`), so what a PDF
viewer finds, what an archive loads and what ``.txt`` says never disagree.
"""
