"""Runnable examples for the site: one module per pattern, plus the shared backends."""
