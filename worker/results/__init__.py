"""Result files beyond Markdown and JSON: plain text, searchable PDF, ALTO XML and layout pictures.

Every format reads the same page words (:mod:`worker.results.words`), so what a PDF viewer
finds, what an archive loads and what ``.txt`` says never disagree.
"""
