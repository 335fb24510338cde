"""HTTP endpoints the extension serves (statistics now; metrics and the dashboard later)."""
