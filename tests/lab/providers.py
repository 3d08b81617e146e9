"""The lab's providers: a `pulumi.runtime.Mocks` that makes each resource
real as the program registers it.

| resource                          | in the lab                                          |
|-----------------------------------|-----------------------------------------------------|
| tls PrivateKey / SelfSignedCert / | real keys, CSRs and certificates (`cryptography`),  |
| CertRequest / LocallySignedCert   | same subject, SANs, usages, validity                |
| command:remote:Command            | `create` (or `update`) runs over real SSH with the  |
|                                   | program's connection and stdin; `delete` at teardown|
| command:remote:CopyToRemote       | a file asset's bytes written at remotePath over SSH |
| libvirt Domain                    | boots the node's lab host (systemd-nspawn) with the |
|                                   | cloud-init of the CloudInitDisk it names            |
| libvirt CloudInitDisk             | its payloads become the host's NoCloud seed         |
| libvirt Provider/Network/Volume   | NOT made real: recorded only. The lab bridge stands |
|                                   | in for the network, an overlay of the lab image for |
|                                   | the root volume (see hosts.py)                      |

State is kept across runs of the program like Pulumi's own: a resource whose
inputs did not change keeps its outputs (the same keys and certificates), a
running host is left running. Commands are the exception, on purpose: every
run executes every step's script again (its `update` when its inputs changed
and it has one), so a second run proves the steps idempotent.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests import realtls
from tests.harness import unwrap

from .hosts import Bridge, Host
from .ssh import Ssh

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
DOMAIN = "libvirt:index/domain:Domain"
CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
NOT_REAL = ("pulumi:providers:libvirt", "libvirt:index/network:Network", "libvirt:index/volume:Volume")
# Steps the lab registers but does not run, by name suffix, and why. Each is
# reported as skipped; everything after them runs.
NOT_RUN = {
    "-kernel": "a container shares this machine's kernel: it cannot load br_netfilter "
               "or set kernel-wide sysctls (this machine has no loadable modules at all)",
    "-kube-packages": "no Kubernetes package repository is reachable from these machines",
}


class StepFailed(RuntimeError):
    pass


@dataclass
class Step:
    """One command as it ran: for the report, the checks and teardown."""
    name: str
    action: str             # create | update
    connection: dict
    delete: str | None
    rc: int
    seconds: float
    started: float
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")


def _digest(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _pem_private(key) -> str:
    fmt = ser.PrivateFormat.PKCS8 if isinstance(key, ed25519.Ed25519PrivateKey) \
        else ser.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(ser.Encoding.PEM, fmt, ser.NoEncryption()).decode()


def _subject(inputs: dict) -> dict:
    s = inputs.get("subject") or {}
    return {"common_name": s.get("commonName"), "organization": s.get("organization"),
            "organizational_unit": s.get("organizationalUnit")}


class LabMocks(pulumi.runtime.Mocks):
    def __init__(self, bridge: Bridge, image: Path, ssh: Ssh,
                 log: Callable[[str], None] = print):
        self.bridge, self.image, self.ssh, self.log = bridge, image, ssh, log
        self.lock = threading.Lock()
        self.state: dict[tuple[str, str], tuple[str, dict]] = {}   # (type, name) -> (inputs digest, outputs)
        self.cloudinit: dict[str, dict] = {}                        # disk id -> its inputs
        self.hosts: dict[str, Host] = {}                            # domain name -> host
        self.steps: list[Step] = []                                 # every command run, in order
        self.skipped: list[tuple[str, str]] = []                    # (step, why), see NOT_RUN
        self.run_no = 0
        self.t0 = time.monotonic()
        self.seen: set[tuple[str, str]] = set()                     # registered by the current run

    def begin_run(self) -> None:
        self.run_no += 1
        self.t0 = time.monotonic()
        self.seen = set()

    # -- the Mocks interface -------------------------------------------------
    def call(self, args: pulumi.runtime.MockCallArgs):
        raise NotImplementedError(f"the lab has no real implementation of the invoke {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        key, inputs = (args.typ, args.name), unwrap(dict(args.inputs))
        digest = _digest(inputs)
        with self.lock:
            previous = self.state.get(key)
            self.seen.add(key)
        if not args.custom:
            return "", {}                               # a component: nothing to make
        if args.typ == COPY:
            outputs = self._copy(args.name, inputs)
        elif args.typ == COMMAND:
            outputs = self._command(args.name, inputs, changed=previous is not None and previous[0] != digest)
        elif previous is not None and previous[0] == digest:
            outputs = previous[1]                       # unchanged: Pulumi keeps its state
        else:
            outputs = self._make(args.typ, args.name, inputs)
        with self.lock:
            self.state[key] = (digest, outputs)
        return outputs.get("id", f"{args.name}-id"), outputs

    def _make(self, typ: str, name: str, inputs: dict) -> dict:
        make = {PRIVATE_KEY: self._private_key, SELF_SIGNED: self._self_signed,
                CERT_REQUEST: self._cert_request, LOCALLY_SIGNED: self._locally_signed,
                DOMAIN: self._domain, CLOUDINIT: self._cloudinit}.get(typ)
        if make is not None:
            return make(name, inputs)
        if typ in NOT_REAL:
            return {**inputs, "id": f"{name}-id"}
        raise NotImplementedError(f"the lab has no real implementation of {typ} ({name})")

    # -- command -------------------------------------------------------------
    def _command(self, name: str, inputs: dict, changed: bool) -> dict:
        action = "update" if changed and inputs.get("update") else "create"
        script = inputs.get(action)
        outputs = {**inputs, "id": f"{name}-id", "stdout": "", "stderr": ""}
        if not script:
            return outputs
        reason = next((why for suffix, why in NOT_RUN.items() if name.endswith(suffix)), None)
        if reason is not None:
            with self.lock:
                self.skipped.append((name, reason))
            self.log(f"  [{time.monotonic() - self.t0:6.1f}s]        skip   {name}: {reason}")
            return outputs
        started = time.monotonic()
        result = self.ssh.run(inputs["connection"], script, stdin=inputs.get("stdin"))
        step = Step(name=name, action=action, connection=inputs["connection"],
                    delete=inputs.get("delete"), rc=result.rc, seconds=result.seconds,
                    started=started - self.t0, stdout=result.stdout, stderr=result.stderr)
        with self.lock:
            self.steps.append(step)
        dials = f" after {result.dials} dials" if result.dials > 1 else ""
        self.log(f"  [{step.started:6.1f}s +{step.seconds:5.1f}s] {action:6} {name} rc={result.rc}{dials}")
        if result.rc != 0:
            quiet = inputs.get("logging") == "none"
            detail = "(output withheld: this step runs with logging none)" if quiet else \
                (result.stderr.strip() or result.stdout.strip())[-3000:]
            host = inputs["connection"]["host"]
            if result.rc == 255:            # never reached the script: show how the host's boot went
                detail += self._console_tail(host)
            raise StepFailed(f"{name}: {action} exited {result.rc} on {host} after {result.dials} dials\n{detail}")
        outputs.update(stdout=result.stdout, stderr=result.stderr)
        return outputs

    def _copy(self, name: str, inputs: dict) -> dict:
        """CopyToRemote of a file asset: its bytes land at remotePath as the
        connection's user (base64 through stdin: the lab's SSH runs text)."""
        source = inputs["source"]
        path = getattr(source, "path", None)
        if path is None:
            raise NotImplementedError(f"{name}: the lab copies file assets only, not {type(source).__name__}")
        data = base64.b64encode(Path(path).read_bytes()).decode()
        target = shlex.quote(inputs["remotePath"])
        started = time.monotonic()
        result = self.ssh.run(inputs["connection"], f"umask 077; base64 -d > {target}", stdin=data)
        self.log(f"  [{started - self.t0:6.1f}s +{result.seconds:5.1f}s] copy   {name} rc={result.rc}")
        if result.rc != 0:
            raise StepFailed(f"{name}: copy to {inputs['remotePath']} exited {result.rc}: {result.stderr.strip()}")
        return {**inputs, "id": f"{name}-id"}

    def _console_tail(self, ip: str, lines: int = 30) -> str:
        for host in list(self.hosts.values()):
            if f"{ip}/" in host.network_config and host.log.exists():
                tail = host.log.read_text(errors="replace").splitlines()[-lines:]
                return f"\n--- last {lines} console lines of {host.name} (running: {host.running}) ---\n" + \
                    "\n".join(tail) + f"\n--- inside {host.name} ---\n" + host.diagnose()
        return ""

    # -- libvirt -------------------------------------------------------------
    def _cloudinit(self, name: str, inputs: dict) -> dict:
        disk_id = f"{name}-id"
        with self.lock:
            self.cloudinit[disk_id] = inputs
        return {**inputs, "id": disk_id}

    def _domain(self, name: str, inputs: dict) -> dict:
        seed = self.cloudinit[inputs["cloudinit"]]
        host = Host(name=inputs["name"], mac=inputs["networkInterfaces"][0]["mac"], bridge=self.bridge,
                    user_data=seed["userData"], meta_data=seed["metaData"],
                    network_config=seed["networkConfig"])
        with self.lock:
            old = self.hosts.pop(host.name, None)
        if old is not None:
            old.discard()                               # a replaced domain is a new machine
        host.boot(self.image)
        with self.lock:
            self.hosts[host.name] = host
        self.log(f"  [{time.monotonic() - self.t0:6.1f}s] booted {host.name}")
        return {**inputs, "id": host.name}

    # -- tls -----------------------------------------------------------------
    def _private_key(self, name: str, inputs: dict) -> dict:
        key = realtls.new_key(inputs["algorithm"], inputs.get("rsaBits"), inputs.get("ecdsaCurve"))
        public = key.public_key()
        openssh_pub = public.public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).decode() + "\n"
        try:
            openssh_priv = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH,
                                             ser.NoEncryption()).decode()
        except ValueError:      # a curve OpenSSH has no name for (P-224)
            openssh_priv = ""
        return {**inputs, "id": name, "privateKeyPem": _pem_private(key),
                "privateKeyPemPkcs8": realtls.key_pem(key), "privateKeyOpenssh": openssh_priv,
                "publicKeyPem": public.public_bytes(ser.Encoding.PEM,
                                                    ser.PublicFormat.SubjectPublicKeyInfo).decode(),
                "publicKeyOpenssh": openssh_pub}

    def _self_signed(self, name: str, inputs: dict) -> dict:
        key = ser.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
        pem = realtls.build_cert(
            subject=_subject(inputs), public_key=key.public_key(), issuer_name=None, signing_key=key,
            allowed_uses=inputs.get("allowedUses") or [], hours=int(inputs["validityPeriodHours"]),
            is_ca=bool(inputs.get("isCaCertificate")), dns_names=inputs.get("dnsNames") or [],
            ip_addresses=inputs.get("ipAddresses") or [])
        return {**inputs, "id": name, "certPem": pem, **_validity(pem)}

    def _cert_request(self, name: str, inputs: dict) -> dict:
        key = ser.load_pem_private_key(inputs["privateKeyPem"].encode(), None)
        builder = x509.CertificateSigningRequestBuilder().subject_name(realtls.x509_name(_subject(inputs)))
        sans = realtls.sans(inputs.get("dnsNames") or [], inputs.get("ipAddresses") or [])
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        csr = builder.sign(key, realtls.sign_alg(key))
        return {**inputs, "id": name, "certRequestPem": csr.public_bytes(ser.Encoding.PEM).decode()}

    def _locally_signed(self, name: str, inputs: dict) -> dict:
        csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
        ca_key = ser.load_pem_private_key(inputs["caPrivateKeyPem"].encode(), None)
        ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns, ips = san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            dns, ips = [], []
        # The tls provider copies subject and SANs from the request.
        pem = realtls.build_cert(
            subject=None, subject_name=csr.subject, public_key=csr.public_key(),
            issuer_name=ca_cert.subject, signing_key=ca_key,
            allowed_uses=inputs.get("allowedUses") or [], hours=int(inputs["validityPeriodHours"]),
            is_ca=bool(inputs.get("isCaCertificate")), dns_names=dns, ip_addresses=ips)
        return {**inputs, "id": name, "certPem": pem, **_validity(pem)}

    # -- what a run no longer registers -------------------------------------
    def delete_removed(self) -> list[str]:
        """Like Pulumi after a successful update: resources the program no
        longer registers are deleted (commands' `delete` in reverse order of
        creation, then their hosts). Returns the names deleted."""
        gone = [k for k in self.state if k not in self.seen]
        names = {name for typ, name in gone}
        done: set[str] = set()
        for step in reversed(self.steps):
            if step.name in names and step.delete and step.name not in done:
                done.add(step.name)
                result = self.ssh.run({**step.connection, "dialErrorLimit": 1}, step.delete)
                if result.rc != 0:
                    raise StepFailed(f"{step.name}: delete exited {result.rc}: {result.stderr.strip()[-500:]}")
        for typ, name in gone:
            outputs = self.state.pop((typ, name))[1]
            if typ == DOMAIN:
                host = self.hosts.pop(outputs["id"], None)
                if host is not None:
                    host.discard()
                    self.log(f"  [{time.monotonic() - self.t0:6.1f}s] deleted {host.name}")
        return sorted(names)

    # -- teardown ------------------------------------------------------------
    def teardown(self) -> list[str]:
        """Delete commands in reverse order of creation (each once), then the
        hosts. Returns what failed, for the caller to report."""
        problems, done = [], set()
        for step in reversed(self.steps):
            if not step.delete or step.name in done:
                continue
            done.add(step.name)
            host = next((h for h in self.hosts.values() if h.running), None)
            if host is None:
                break
            result = self.ssh.run({**step.connection, "dialErrorLimit": 1}, step.delete)
            if result.rc != 0:
                problems.append(f"{step.name}: delete exited {result.rc}: {result.stderr.strip()[-500:]}")
        for host in list(self.hosts.values()):
            host.discard()
        self.hosts.clear()
        return problems


def _validity(pem: str) -> dict:
    cert = x509.load_pem_x509_certificate(pem.encode())
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {"validityStartTime": cert.not_valid_before_utc.strftime(fmt),
            "validityEndTime": cert.not_valid_after_utc.strftime(fmt),
            "readyForRenewal": cert.not_valid_after_utc <= dt.datetime.now(dt.timezone.utc)}
