"""One router module per resource: jobs, documents, and the operational endpoints."""
