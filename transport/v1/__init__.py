"""Generated protobuf and gRPC code for `proto/transport/v1/*.proto` (scripts/gen_proto.py)."""
