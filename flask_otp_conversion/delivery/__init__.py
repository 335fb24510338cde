"""Delivery: the reporter, its breaker and rate limit, and which process delivers."""
