"""The Transformers engine's parts: model recipes, loading, generation and the ``serve-hf`` server."""
