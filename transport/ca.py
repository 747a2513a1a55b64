"""Collaboration certificate authority: one CA per collaboration, one certificate per node.

The CA is an ECDSA P-256 key with BasicConstraints(ca=True, path_length=0). Node certificates carry SANs:
DNS names (the node id, `localhost`, anything extra) and a URI `spiffe://cleanroom/<role>/<id>` (role
`party` or `coordinator`) from which the peer's identity is read on every call; EKU server+client auth; 30
days by default. Each node also gets an Ed25519 identity key pair (plan approvals, secure-aggregation
signatures).

Files in the CA directory: `ca.pem`, `ca.key`; per node `<id>.pem`, `<id>.key`, `<id>.ed25519` (PEM PKCS8
private key), `<id>.ed25519.pub` (base64 of the raw 32-byte public key, the form the plan's `identity_key`
uses).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cleanroom.errors import InvalidInput, NotFound
from cleanroom.private_files import write_private

TRUST_DOMAIN = "cleanroom"
ROLES = ("party", "coordinator")


@dataclass(frozen=True)
class NodeFiles:
    """Paths written by `issue` and the certificate's fingerprint."""

    cert: Path
    key: Path
    identity_key: Path
    identity_public: Path
    cert_sha256: str
    identity_public_b64: str


def spiffe_uri(role: str, node_id: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{role}/{node_id}"


def _write_private(path: Path, data: bytes) -> None:
    write_private(path, data)  # created 0600 (never readable by others, not even briefly), then renamed


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def init_ca(directory: Path, name: str = "cleanroom collaboration CA", days: int = 365) -> Path:
    """Create `ca.pem`/`ca.key` in `directory` (refuses to overwrite an existing CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "ca.pem"
    if cert_path.exists():
        raise InvalidInput(f"{cert_path} already exists; refusing to overwrite the collaboration CA")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / "ca.key", _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if not cert_path.exists() or not key_path.exists():
        raise NotFound(f"no CA in {directory} (run `cleanroom ca init --dir {directory}` first)")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"{key_path} is not an ECDSA key")
    return cert, key


def _san(role: str, node_id: str, dns_names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [
        x509.DNSName(n) for n in dict.fromkeys((node_id, "localhost", *dns_names))
    ]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    names.append(x509.UniformResourceIdentifier(spiffe_uri(role, node_id)))
    return x509.SubjectAlternativeName(names)


def _node_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    role: str,
    node_id: str,
    dns_names: tuple[str, ...],
    days: int,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(role, node_id, dns_names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def issue(
    directory: Path,
    node_id: str,
    role: str = "party",
    dns_names: tuple[str, ...] = (),
    days: int = 30,
    out_dir: Path | None = None,
) -> NodeFiles:
    """Issue a node certificate and an Ed25519 identity key pair signed by the CA in `directory`."""
    if role not in ROLES:
        raise InvalidInput(f"role ({role!r}) must be one of {ROLES}")
    if not node_id or not all(c.isalnum() or c in "-_." for c in node_id):
        raise InvalidInput(f"node id ({node_id!r}) must be non-empty letters, digits, '-', '_' or '.'")
    ca_cert, ca_key = _load_ca(directory)
    out = out_dir or directory
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _node_certificate(ca_cert, ca_key, key, role, node_id, dns_names, days)
    identity = ed25519.Ed25519PrivateKey.generate()
    raw_public = identity.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    files = NodeFiles(
        cert=out / f"{node_id}.pem",
        key=out / f"{node_id}.key",
        identity_key=out / f"{node_id}.ed25519",
        identity_public=out / f"{node_id}.ed25519.pub",
        cert_sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        identity_public_b64=base64.b64encode(raw_public).decode("ascii"),
    )
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.key, _pem_key(key))
    _write_private(files.identity_key, _pem_key(identity))
    files.identity_public.write_text(files.identity_public_b64 + "\n")
    return files


def cert_sha256(pem: bytes) -> str:
    """Hex SHA-256 of the DER encoding of a PEM certificate (the plan's `cert_sha256`)."""
    cert = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def identity_of(cert: x509.Certificate) -> tuple[str, str]:
    """(role, id) from the certificate's `spiffe://cleanroom/<role>/<id>` URI SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise InvalidInput("certificate has no subjectAltName") from None
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(prefix):
            parts = uri[len(prefix) :].split("/")
            if len(parts) == 2 and parts[0] in ROLES and parts[1]:
                return parts[0], parts[1]
    raise InvalidInput(f"certificate has no {prefix}<role>/<id> URI SAN")


def load_identity_key(path: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 private key")
    return key
