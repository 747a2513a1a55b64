"""cleanroom_cli package."""
