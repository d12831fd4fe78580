"""The verify domain: verifications, codes, policies, tenants, delivery."""
