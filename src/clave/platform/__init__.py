"""Shared plumbing: settings, app factory, error rendering, health, logging, the server."""
