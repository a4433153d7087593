"""A job's home: every state change (store), the typed read model (view), and its options."""
