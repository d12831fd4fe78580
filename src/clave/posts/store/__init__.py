"""The posts store port and its backends (memory, SQL on SQLite or PostgreSQL)."""
