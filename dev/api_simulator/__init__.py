"""Local stand-in for Stripe, GitHub and Salesforce (demo and integration tests)."""
