"""The vLLM engine: OpenAI-compatible HTTP client, request building, in-flight control, containers."""
