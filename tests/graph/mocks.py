"""Mocks for graph tests: every resource echoes its inputs; tls resources
return recognisable fake PEM text so tests can trace where key material goes."""
from __future__ import annotations

import hashlib
import json

import pulumi

KEY_MARK = "FAKE-PRIVATE-KEY-MATERIAL"
TOKEN_MARK = "faketoken"
CERT_KEY_MARK = "fake-certificate-key"


def _short(text) -> str:
    return hashlib.sha256(str(text).encode()).hexdigest()[:8]


class EchoMocks(pulumi.runtime.Mocks):
    def __init__(self, cert_generation: dict[str, int] | None = None):
        # name -> generation: bump one to simulate a re-issued certificate.
        self.cert_generation = cert_generation or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outs = dict(args.inputs)
        if args.typ == "tls:index/privateKey:PrivateKey":
            outs.update(
                private_key_pem=f"-----BEGIN PRIVATE KEY-----\n{KEY_MARK}-{args.name}\n-----END PRIVATE KEY-----\n",
                private_key_openssh=f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_MARK}-{args.name}\n-----END OPENSSH PRIVATE KEY-----\n",
                public_key_openssh=f"ssh-ed25519 AAAA{args.name}\n",
                public_key_pem=f"-----BEGIN PUBLIC KEY-----\n{args.name}\n-----END PUBLIC KEY-----\n",
            )
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            gen = self.cert_generation.get(args.name, 0)
            # what it was issued from shows in the fake PEM: a changed request is a new cert
            issued_from = _short(args.inputs.get("certRequestPem", ""))
            outs["cert_pem"] = (f"-----BEGIN CERTIFICATE-----\n{args.name}-gen{gen}-{issued_from}\n"
                                "-----END CERTIFICATE-----\n")
        elif args.typ == "tls:index/certRequest:CertRequest":
            subject = _short(json.dumps(args.inputs.get("subject"), sort_keys=True, default=str))
            outs["cert_request_pem"] = (f"-----BEGIN CERTIFICATE REQUEST-----\n{args.name}-{subject}\n"
                                        "-----END CERTIFICATE REQUEST-----\n")
        elif args.typ == "command:remote:Command":
            outs["stdout"] = ""
            if "join-credentials" in args.name:
                outs["stdout"] = json.dumps({"token": f"{TOKEN_MARK}.{args.name}", "caCertHash": "sha256:00",
                                             "certificateKey": f"{CERT_KEY_MARK}-{args.name}"})
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}
