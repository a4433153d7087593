"""Documents on their way in: find sources, identify them (sniff), count and render pages, ingest, inbox."""
