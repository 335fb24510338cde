"""Database servers the suite starts for itself on loopback ports, in temporary folders (one module per server)."""
