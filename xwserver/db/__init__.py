"""Persistence: the schema (models), the engine and the migrations."""
