"""A job's home: every state change (store), the typed read model (view), its options, who may see it."""
