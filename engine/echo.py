"""Mocks that run nothing: every resource echoes its inputs; tls resources
return recognisable fake PEM text so tests can trace where key material
goes. The executor of the engine model for plan tests and `make review`."""
from __future__ import annotations

import hashlib
import json

import pulumi

KEY_MARK = "FAKE-PRIVATE-KEY-MATERIAL"
TOKEN_MARK = "faketoken"
SHARED_MARK = "FAKE-SHARED-CONTROL-PLANE-KEY"


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
            outs["validity_end_time"] = "2027-11-26T00:00:00Z"
        elif args.typ == "tls:index/certRequest:CertRequest":
            subject = _short(json.dumps(args.inputs.get("subject"), sort_keys=True, default=str))
            outs["cert_request_pem"] = (f"-----BEGIN CERTIFICATE REQUEST-----\n{args.name}-{subject}\n"
                                        "-----END CERTIFICATE REQUEST-----\n")
        elif args.typ == "command:remote:Command":
            outs["stdout"] = ""
            if "-join-token-" in args.name:
                outs["stdout"] = json.dumps({"token": f"{TOKEN_MARK}.{args.name}", "caCertHash": "sha256:00"})
            elif args.name.endswith("-export-shared-certs"):
                outs["stdout"] = "".join(f"-----BEGIN {kind}-----\n{SHARED_MARK}-{i}\n-----END {kind}-----\n"
                                         for i, kind in enumerate(("CERTIFICATE", "PRIVATE KEY", "PRIVATE KEY",
                                                                   "PUBLIC KEY", "CERTIFICATE", "PRIVATE KEY")))
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class EchoExecutor(EchoMocks):
    """EchoMocks as the executor of the engine model (engine.monitor): what
    the engine plans is recorded, not run. Each creation of a tls resource
    yields new material (a counter in the fake PEM), like the real provider's
    new key or certificate; an update keeps the resource's id."""

    def __init__(self):
        super().__init__()
        self.creations: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        self.deletes: list[str] = []
        self.fail: set[str] = set()        # names of steps whose script fails (tests)

    def execute(self, step, inputs: dict):
        from pulumi.runtime import MockResourceArgs
        if step.name in self.fail:
            raise RuntimeError(f"{step.name}: its script failed (injected)")
        if step.action == "update" or (step.op == "update" and step.old is not None):
            outs = {**step.old.outputs, **inputs}
            if "-join-token-" in step.name:       # each run of the script mints a new secret half
                self.by_name[step.name] = self.by_name.get(step.name, 0) + 1
                outs["stdout"] = json.dumps({"token": f"{TOKEN_MARK}.{step.name}-{self.by_name[step.name]}",
                                             "caCertHash": "sha256:00"})
            return step.old.id, outs
        n = self.creations[step.urn] = self.creations.get(step.urn, 0) + 1
        id_, outs = self.new_resource(MockResourceArgs(typ=step.type, name=step.name, inputs=inputs,
                                                       provider="", resource_id="", custom=True))
        if step.name.endswith("-helpers"):
            # helpers.sh prints the machine id kept on the node's root disk:
            # a new one exactly when that disk (its Volume) was created anew
            root = step.name.removesuffix("-helpers") + "-root"
            outs["stdout"] = f"{root}-disk-{self.by_name.get(root, 0)}"
        self.by_name[step.name] = self.by_name.get(step.name, 0) + 1
        if n > 1:
            for key in ("private_key_pem", "private_key_openssh", "public_key_openssh", "cert_pem"):
                if key in outs:
                    outs[key] = outs[key].replace(step.name, f"{step.name}-{n}", 1)
            if "validity_end_time" in outs:         # a re-issued certificate: a later expiry
                outs["validity_end_time"] = f"2027-11-26T{n - 1:02d}:00:00Z"
        return f"{id_}-{n}", outs

    def delete(self, resource) -> None:
        self.deletes.append(resource.name)
