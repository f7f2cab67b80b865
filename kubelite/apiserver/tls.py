"""The API's TLS: a node-local certificate authority and the serving certificate it signs.

Owns: `<root>/api/ca.crt` + `ca.key` (made once) and `server.crt` + `server.key` (made again when
the names the server must answer to change), all keys 0600 in the 0700 `api` directory, and the
`ssl.SSLContext` the server listens with. kubectl sends a bearer token only over TLS, so the API
is HTTPS; the kubeconfig carries the CA (see docs/decisions/0008-kubernetes-api.md).
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import kubelite.statefiles as statefiles
from kubelite.apiserver.auth import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY
from kubelite.clock import utcnow

VALID_FOR = timedelta(days=3650)
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey, names: list[str] | None) -> x509.Certificate:
    now = utcnow()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALID_FOR))
    if names is None:   # the CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True) \
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
    else:
        alt: list[x509.GeneralName] = []
        for entry in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(entry)))
            except ValueError:
                alt.append(x509.DNSName(entry))
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True) \
            .add_extension(x509.SubjectAlternativeName(alt), critical=False) \
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def certificate_names(names: list[str]) -> list[str]:
    """The names a serving certificate can carry: IP addresses and valid DNS names (ASCII labels of
    letters, digits and hyphens); others (a non-ASCII host name, say) are left out, not an error."""
    kept = []
    for entry in names:
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            if not (len(entry) <= 253 and all(_DNS_LABEL.match(label) for label in entry.split("."))):
                continue
        kept.append(entry)
    return sorted(set(kept))


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in alt.get_values_for_type(x509.IPAddress)} | set(alt.get_values_for_type(x509.DNSName))


def ensure_certificates(directory: Path, names: list[str]) -> None:
    """Make the CA once, and a serving certificate that covers `names` (IPs or DNS names; names
    that are neither are skipped)."""
    names = certificate_names(names)
    ca_cert_path, ca_key_path = directory / CA_CERT, directory / CA_KEY
    if ca_cert_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("kubelite-ca", ca_key, None, ca_key, None)
        statefiles.write_atomic(ca_key_path, _key_pem(ca_key), 0o600)
        statefiles.write_atomic(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o600)
        (directory / SERVER_CERT).unlink(missing_ok=True)
    server_cert_path = directory / SERVER_CERT
    if server_cert_path.exists() and (directory / SERVER_KEY).exists():
        current = x509.load_pem_x509_certificate(server_cert_path.read_bytes())
        if set(names) <= _names_of(current) and current.not_valid_after_utc > utcnow():
            return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("kubelite", key, ca_cert, ca_key, names)
    statefiles.write_atomic(directory / SERVER_KEY, _key_pem(key), 0o600)
    statefiles.write_atomic(server_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o600)


def server_context(directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / SERVER_CERT, directory / SERVER_KEY)
    context.set_alpn_protocols(["http/1.1"])
    return context


