"""The users store port and its backends (memory, SQL on SQLite or PostgreSQL)."""
