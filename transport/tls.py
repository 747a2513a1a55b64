"""TLS material of one node and the gRPC credentials built from it (always mutual TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from cleanroom.errors import InvalidInput


@dataclass(frozen=True)
class TlsFiles:
    """The collaboration CA certificate and this node's certificate and private key (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def __post_init__(self) -> None:
        for label, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if not Path(path).is_file():
                raise InvalidInput(f"TLS {label} file {path} does not exist")

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
            root_certificates=Path(self.ca).read_bytes(),
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes(),
            private_key=Path(self.key).read_bytes(),
            certificate_chain=Path(self.cert).read_bytes(),
        )
