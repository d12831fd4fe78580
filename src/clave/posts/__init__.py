"""The posts domain: posts by users in threads."""
