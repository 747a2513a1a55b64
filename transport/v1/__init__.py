"""Generated protobuf and gRPC code for `proto/transport/v1/*.proto` (regenerate with scripts/gen_proto.py)."""
