"""Shared building blocks. Each takes flat arguments, never a model family's config."""
