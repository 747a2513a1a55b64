"""cleanroom core: pure computation shared by party nodes and the coordinator (never imports grpc)."""

__version__ = "0.1.0"
