"""Jobs, documents and pages: every state change (store), the typed read model (view), who may see what."""
