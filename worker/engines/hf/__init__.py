"""The Hugging Face Transformers engine: recipes, loading, batched generation, one model per process."""
