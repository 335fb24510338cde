"""Delivery: the decisions (``policy``, ``breaker``), the shared rate budget (``ratelimit``), the threads that
carry them out (``worker``), and which process delivers (``election``)."""
