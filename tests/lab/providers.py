"""The lab's providers: what the real Pulumi engine asks the stand-in
plugins for (Create, Update, Delete; tests/realengine, realrun.py) is made
real, as the real providers would.

| resource                          | in the lab                                          |
|-----------------------------------|-----------------------------------------------------|
| tls PrivateKey / SelfSignedCert / | real keys, CSRs and certificates (`cryptography`),  |
| CertRequest / LocallySignedCert   | same subject, SANs, usages, validity; new ones on   |
|                                   | every creation                                      |
| command:remote:Command            | the script the engine chose (`create` or `update`)  |
|                                   | over real SSH with the program's connection and     |
|                                   | stdin; `delete` when the engine deletes it          |
| command:remote:CopyToRemote       | a file asset's bytes at remotePath, mode 0644 as    |
|                                   | SFTP leaves it (parent directories created)         |
| libvirt Volume                    | a disk: the upper dir of a host's overlay root. It  |
|                                   | lives exactly as long as the Volume                 |
| libvirt Domain                    | boots the node's lab host (systemd-nspawn) on its   |
|                                   | Volume's disk with the CloudInitDisk it names; an   |
|                                   | update (a swapped cloud-init disk) touches nothing  |
| libvirt CloudInitDisk             | its payloads become the host's NoCloud seed         |
| libvirt Provider/Network          | NOT made real: recorded only. The lab bridge stands |
|                                   | in for the network (see hosts.py)                   |

Nothing here decides *whether* something runs: the engine does, and a
resource whose inputs did not change is "same" and nothing runs, exactly as
on a user's `pulumi up`.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import shlex
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests import realtls
from tests.harness import unwrap

from .hosts import Host, Slot
from .ssh import Ssh

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
DOMAIN = "libvirt:index/domain:Domain"
CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
VOLUME = "libvirt:index/volume:Volume"
NOT_REAL = ("pulumi:providers:libvirt", "libvirt:index/network:Network")
# Steps the lab registers but does not run, by name suffix, and why. Each is
# reported as skipped; everything after them runs.
# (None today: a Kubernetes node's kernel step runs, its sysctls are the
# node's network namespace's and its modules are built into this kernel.)
NOT_RUN: dict[str, str] = {}
# The lab has no registry: after a node's containerd step, the images kubeadm
# and the CNI would pull are given to that containerd (Lab.give_images).
GIVE_IMAGES_AFTER = "-containerd"


class StepFailed(RuntimeError):
    """A step that failed, with the provider's own error text (pulumi-command
    remote/commandOutputs.go: `%w: running %q:\n%s`, the SSH exit error, the
    whole command quoted, then stdout and stderr as they came). `output` is
    the last part alone: what tests match on (the command text would match
    anything it contains)."""

    def __init__(self, text: str, output: str = ""):
        super().__init__(text)
        self.output = output


@dataclass
class Step:
    """One command as it ran: for the report, the checks and teardown."""
    name: str
    action: str             # create | update | delete
    op: str                 # the engine's step: create | update | replace | delete
    connection: dict
    rc: int
    seconds: float
    started: float
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")


def _pem_private(key) -> str:
    fmt = ser.PrivateFormat.PKCS8 if isinstance(key, ed25519.Ed25519PrivateKey) \
        else ser.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(ser.Encoding.PEM, fmt, ser.NoEncryption()).decode()


def _subject(inputs: dict) -> dict:
    s = inputs.get("subject") or {}
    return {"common_name": s.get("commonName"), "organization": s.get("organization"),
            "organizational_unit": s.get("organizationalUnit")}


def _go_quote(text: str) -> str:
    """Go's %q of a string, near enough for an error message."""
    return json.dumps(text)


class LabProviders:
    """The providers' side of the lab: each step the engine starts, acted on."""

    def __init__(self, slot: Slot, image: Path, ssh: Ssh,
                 log: Callable[[str], None] = print, runs_pods: Callable[[str], bool] = lambda domain: False,
                 give_images: Callable[[dict], float] | None = None):
        """`runs_pods(domain name)`: the host is a Kubernetes node (Host.kubelet).
        `give_images(connection)`: what stands in for a registry (GIVE_IMAGES_AFTER)."""
        self.slot, self.image, self.ssh, self.log = slot, image, ssh, log
        self.runs_pods = runs_pods
        self.give_images = give_images
        self.lock = threading.Lock()
        self.cloudinit: dict[str, dict] = {}                        # disk id -> its inputs
        self.disks: dict[str, Path] = {}                            # volume id -> its disk dir
        self.hosts: dict[str, Host] = {}                            # domain name -> host
        self.steps: list[Step] = []                                 # every command run, in order
        self.skipped: list[tuple[str, str]] = []                    # (step, why), see NOT_RUN
        self.run_no = 0
        self.t0 = time.monotonic()

    def begin_run(self) -> None:
        self.run_no += 1
        self.t0 = time.monotonic()
        self.failures: list[StepFailed] = []            # this run's, in the order they happened

    def execute(self, step, inputs: dict) -> tuple[str, dict]:
        """Create or update one resource, as its provider does."""
        inputs = unwrap(inputs)
        if step.type == COMMAND:
            outputs = self._command(step, inputs)
            return step.old.id if step.op == "update" and step.old else f"{step.name}-{uuid.uuid4().hex[:8]}", \
                outputs
        if step.type == COPY:
            return f"{step.name}-id", self._copy(step.name, inputs)
        if step.op == "update" and step.old is not None:
            # libvirt updates in place (a Domain's swapped cloud-init disk, a
            # Network's DNS hosts): nothing a host sees changes.
            return step.old.id, {**step.old.outputs, **inputs}
        make = {PRIVATE_KEY: self._private_key, SELF_SIGNED: self._self_signed,
                CERT_REQUEST: self._cert_request, LOCALLY_SIGNED: self._locally_signed,
                DOMAIN: self._domain, CLOUDINIT: self._cloudinit, VOLUME: self._volume}.get(step.type)
        if make is not None:
            outputs = make(step.name, inputs)
            return outputs["id"], outputs
        if step.type in NOT_REAL:
            return f"{step.name}-id", {**inputs, "id": f"{step.name}-id"}
        raise NotImplementedError(f"the lab has no real implementation of {step.type} ({step.name})")

    def delete(self, res) -> None:
        """Delete one resource, as its provider does."""
        if res.type == COMMAND:
            script = res.inputs.get("delete")
            if script:
                self._run(res.name, "delete", "delete", res.inputs["connection"], script, None,
                          quiet=res.inputs.get("logging") == "none")
        elif res.type == DOMAIN:
            host = self.hosts.pop(res.outputs.get("name", ""), None)
            if host is not None:
                host.discard()                  # the machine goes; its disk stays with its Volume
                self.log(f"  [{time.monotonic() - self.t0:6.1f}s] deleted domain {host.name}")
        elif res.type == VOLUME:
            disk = self.disks.pop(res.id, None)
            if disk is not None:
                shutil.rmtree(disk, ignore_errors=True)
                self.log(f"  [{time.monotonic() - self.t0:6.1f}s] deleted volume {res.id}")
        elif res.type == CLOUDINIT:
            self.cloudinit.pop(res.id, None)

    # -- command -------------------------------------------------------------
    def _command(self, step, inputs: dict) -> dict:
        outputs = {**inputs, "stdout": "", "stderr": ""}
        if not step.runs:
            return outputs
        reason = next((why for suffix, why in NOT_RUN.items() if step.name.endswith(suffix)), None)
        if reason is not None:
            with self.lock:
                self.skipped.append((step.name, reason))
            self.log(f"  [{time.monotonic() - self.t0:6.1f}s]        skip   {step.name}: {reason}")
            return outputs
        result = self._run(step.name, step.action, step.op, inputs["connection"], step.script, inputs.get("stdin"),
                           quiet=inputs.get("logging") == "none")
        outputs.update(stdout=result.stdout.removesuffix("\n"), stderr=result.stderr.removesuffix("\n"))
        if self.give_images and step.name.endswith(GIVE_IMAGES_AFTER):
            seconds = self.give_images(inputs["connection"])
            self.log(f"  [{time.monotonic() - self.t0:6.1f}s +{seconds:5.1f}s] images into {step.name}'s containerd")
        return outputs

    def _run(self, name: str, action: str, op: str, conn: dict, script: str, stdin, quiet: bool):
        started = time.monotonic()
        result = self.ssh.run(conn, script, stdin=stdin)
        step = Step(name=name, action=action, op=op, connection=conn, rc=result.rc, seconds=result.seconds,
                    started=started - self.t0, stdout=result.stdout, stderr=result.stderr)
        with self.lock:
            self.steps.append(step)
        dials = f" after {result.dials} dials" if result.dials > 1 else ""
        self.log(f"  [{step.started:6.1f}s +{step.seconds:5.1f}s] {action:6} {name} rc={result.rc}{dials}")
        if result.rc != 0:
            # The provider prints the command and all its output whatever
            # `logging` says; the lab's log keeps the tail of the output.
            output = result.stdout + result.stderr
            if result.rc == 255:            # never reached the script: show how the host's boot went
                output += self._console_tail(conn["host"])
            self.log(f"    {name} failed{' (logging none)' if quiet else ''}: {output.strip()[-1500:]}")
            failure = StepFailed(f"{name}: Process exited with status {result.rc}: running {_go_quote(script)}:\n"
                                 f"{output}", output)
            with self.lock:
                self.failures.append(failure)
            raise failure
        return result

    def _copy(self, name: str, inputs: dict) -> dict:
        """CopyToRemote of a file asset over SFTP: parent directories created,
        the file written as the connection's user with mode 0644 (umask
        permitting), as the provider leaves it (base64 through stdin: the
        lab's SSH runs text)."""
        source = inputs["source"]
        path = getattr(source, "path", None)
        if path is None:
            raise NotImplementedError(f"{name}: the lab copies file assets only, not {type(source).__name__}")
        data = base64.b64encode(Path(path).read_bytes()).decode()
        target = shlex.quote(inputs["remotePath"])
        started = time.monotonic()
        result = self.ssh.run(inputs["connection"],
                              f"mkdir -p \"$(dirname {target})\" && base64 -d > {target} && chmod 0644 {target}",
                              stdin=data)
        self.log(f"  [{started - self.t0:6.1f}s +{result.seconds:5.1f}s] copy   {name} rc={result.rc}")
        if result.rc != 0:
            raise StepFailed(f"{name}: copy to {inputs['remotePath']} failed: {result.stderr.strip()}",
                             result.stderr)
        return {**inputs}

    def _console_tail(self, ip: str, lines: int = 30) -> str:
        for host in list(self.hosts.values()):
            if f"{ip}/" in host.network_config and host.log.exists():
                tail = host.log.read_text(errors="replace").splitlines()[-lines:]
                return f"\n--- last {lines} console lines of {host.name} (running: {host.running}) ---\n" + \
                    "\n".join(tail) + f"\n--- inside {host.name} ---\n" + host.diagnose()
        return ""

    # -- libvirt -------------------------------------------------------------
    def _volume(self, name: str, inputs: dict) -> dict:
        """A volume's id is its path: the same after a re-creation."""
        vol_id = f"/var/lib/libvirt/images/{inputs['name']}"
        if inputs.get("source") and not inputs.get("baseVolumeId"):
            return {**inputs, "id": vol_id}             # the base image: the lab's image stands in
        disk = self.slot.disks_dir / inputs["name"]
        shutil.rmtree(disk, ignore_errors=True)
        (disk / "upper").mkdir(parents=True)
        (disk / "work").mkdir()
        with self.lock:
            self.disks[vol_id] = disk
        self.log(f"  [{time.monotonic() - self.t0:6.1f}s] created volume {vol_id}")
        return {**inputs, "id": vol_id}

    def _cloudinit(self, name: str, inputs: dict) -> dict:
        disk_id = f"/var/lib/libvirt/images/{inputs['name']};{uuid.uuid4()}"
        with self.lock:
            self.cloudinit[disk_id] = inputs
        return {**inputs, "id": disk_id}

    def _domain(self, name: str, inputs: dict) -> dict:
        seed = self.cloudinit[inputs["cloudinit"]]
        disk = self.disks.get(inputs["disks"][0]["volumeId"])
        if disk is None:
            raise StepFailed(f"{name}: its volume {inputs['disks'][0]['volumeId']} does not exist")
        host = Host(name=inputs["name"], mac=inputs["networkInterfaces"][0]["mac"], slot=self.slot,
                    user_data=seed["userData"], meta_data=seed["metaData"],
                    network_config=seed["networkConfig"], disk=disk, kubelet=self.runs_pods(inputs["name"]))
        with self.lock:
            old = self.hosts.pop(host.name, None)
        if old is not None:
            old.discard()
        host.boot(self.image)
        with self.lock:
            self.hosts[host.name] = host
        self.log(f"  [{time.monotonic() - self.t0:6.1f}s] booted {host.name}")
        return {**inputs, "id": str(uuid.uuid4())}              # a new UUID per creation

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

    # -- teardown ------------------------------------------------------------
    def discard_all(self) -> None:
        """Stop every host and drop every disk (after the engine's destroy,
        or when it could not finish)."""
        for host in list(self.hosts.values()):
            host.discard()
        self.hosts.clear()
        for disk in list(self.disks.values()):
            shutil.rmtree(disk, ignore_errors=True)
        self.disks.clear()


def _validity(pem: str) -> dict:
    cert = x509.load_pem_x509_certificate(pem.encode())
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {"validityStartTime": cert.not_valid_before_utc.strftime(fmt),
            "validityEndTime": cert.not_valid_after_utc.strftime(fmt),
            "readyForRenewal": cert.not_valid_after_utc <= dt.datetime.now(dt.timezone.utc)}
