"""Delivery: channels -> providers, and the outbox dispatcher that calls them."""
