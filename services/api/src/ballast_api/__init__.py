"""Ballast state API (FastAPI): sessions, drafts, forms, resources, audit."""
