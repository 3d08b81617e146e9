"""Real keys and certificates with the tls provider's semantics (subject,
SANs, allowed_uses, validity), made with `cryptography`. Used by the render
tests and by the lab's tls provider."""
from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

EKU = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
KU = {"digital_signature": "digital_signature", "key_encipherment": "key_encipherment",
      "cert_signing": "key_cert_sign", "crl_signing": "crl_sign"}


def new_key(algorithm: str = "ECDSA", rsa_bits: int | None = None, ecdsa_curve: str | None = None):
    if algorithm == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits or 2048)
    curve = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1,
             "P521": ec.SECP521R1}[ecdsa_curve or "P224"]
    return ec.generate_private_key(curve())


def key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()

def x509_name(subject: dict | None) -> x509.Name:
    subject = subject or {}
    attrs = []
    if subject.get("organization"):
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    if subject.get("organizational_unit"):
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, subject["organizational_unit"]))
    if subject.get("common_name"):
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject["common_name"]))
    return x509.Name(attrs)


def sign_alg(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def sans(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list:
    return [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]


def build_cert(*, subject: dict | None, public_key, issuer_name: x509.Name | None, signing_key,
               subject_name: x509.Name | None = None,
               allowed_uses: Sequence[str], hours: int, is_ca: bool = False,
               dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = ()) -> str:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    name = subject_name or x509_name(subject)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(public_key).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(hours=hours))
         .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    ku = {v: False for v in ("digital_signature", "content_commitment", "key_encipherment",
                             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                             "encipher_only", "decipher_only")}
    for use in allowed_uses:
        if use in KU:
            ku[KU[use]] = True
    b = b.add_extension(x509.KeyUsage(**ku), critical=True)
    ekus = [EKU[u] for u in allowed_uses if u in EKU]
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    alt = sans(dns_names, ip_addresses)
    if alt:
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return b.sign(signing_key, sign_alg(signing_key)).public_bytes(serialization.Encoding.PEM).decode()


class MiniCA:
    """A CA and leaf certs, for tests that need throwaway PKI."""

    def __init__(self, cn: str = "etcd-ca"):
        self.key = new_key("ECDSA", ecdsa_curve="P256")
        self.cert_pem = build_cert(subject={"common_name": cn}, public_key=self.key.public_key(),
                                   issuer_name=None, signing_key=self.key, is_ca=True, hours=24,
                                   allowed_uses=["cert_signing", "crl_signing", "digital_signature"])
        self.name = x509_name({"common_name": cn})

    def issue(self, cn: str, uses: Sequence[str], dns: Sequence[str] = (), ips: Sequence[str] = ()):
        key = new_key("ECDSA", ecdsa_curve="P256")
        cert = build_cert(subject={"common_name": cn}, public_key=key.public_key(),
                          issuer_name=self.name, signing_key=self.key, allowed_uses=uses,
                          hours=24, dns_names=dns, ip_addresses=ips)
        return cert, key_pem(key)


def ssh_key_pair() -> tuple[str, str]:
    """A new ed25519 key: (OpenSSH private key, `ssh-ed25519 AAAA...` line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public
