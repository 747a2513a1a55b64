"""party package."""
