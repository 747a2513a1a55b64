"""Explicit gRPC limits shared by servers and channels: message sizes, keepalive, deadlines.

Keepalive follows grpc `doc/keepalive.md`: the client pings no more often than the server permits
(client `keepalive_time_ms` 30 s > server `min_recv_ping_interval_without_data_ms` 10 s), so idle connections
survive without the server answering GOAWAY/too_many_pings.
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a masked vector of 8M cells; larger tables are refused by the plan cap
CHUNK_BYTES = 1024 * 1024  # result files are streamed in chunks of this size
# What a party node accepts in one message. Nothing a party receives carries a vector: the largest
# legitimate request is a result chunk (CHUNK_BYTES + header) or a stage request listing one small
# advertisement or ciphertext per party. A claimed plan hash or id of megabytes never reaches the node.
PARTY_MAX_RECEIVE_BYTES = 4 * 1024 * 1024
DEFAULT_DEADLINE_S = 60.0  # per call; rounds on big data may raise it via config
HEALTH_DEADLINE_S = 5.0

SERVER_OPTIONS: list[tuple[str, int]] = [
    # gRPC sets SO_REUSEPORT by default: a second server on the same port (another process on a shared
    # machine) would silently take half the connections. Binding an occupied port must fail instead.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
]

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 0),  # retries are explicit and only for idempotent stage calls
]
