"""A self-signed certificate for 127.0.0.1 / localhost, made at test time, and client contexts that trust it.

Uses the ``cryptography`` package when it is installed, else ``openssl req`` (one of the two is on every machine
that runs these tests; the module says which is missing otherwise). The key is EC P-256: fast to make.
"""
from __future__ import annotations

import datetime
import ipaddress
import pathlib
import shutil
import ssl
import subprocess
from dataclasses import dataclass

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
except ImportError:  # the openssl command line is used instead
    x509 = None


@dataclass(frozen=True)
class CertFiles:
    cert: str
    key: str

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate (hostname 127.0.0.1 or localhost)."""
        return ssl.create_default_context(cafile=self.cert)


def make_cert(directory: pathlib.Path, *, password: bytes | None = None, use_openssl: bool = False) -> CertFiles:
    """Write ``cert.pem`` and ``key.pem`` (encrypted with ``password`` when given) into ``directory``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if x509 is not None and not use_openssl:
        _with_cryptography(cert, key, password)
    elif shutil.which("openssl"):
        _with_openssl(cert, key, password)
    else:
        raise RuntimeError("tests need the cryptography package or the openssl command to make a certificate")
    return CertFiles(str(cert), str(key))


def _with_cryptography(cert_path: pathlib.Path, key_path: pathlib.Path, password: bytes | None) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           encryption))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _with_openssl(cert_path: pathlib.Path, key_path: pathlib.Path, password: bytes | None) -> None:
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
               "-keyout", str(key_path), "-out", str(cert_path)]
    command += ["-passout", f"pass:{password.decode()}"] if password else ["-nodes"]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
