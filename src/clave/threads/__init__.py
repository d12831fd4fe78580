"""The threads domain: discussion threads, each created by a user."""
