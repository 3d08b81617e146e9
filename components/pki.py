"""The etcd PKI: two CAs that never leave Pulumi's state, and per member a
server and a peer certificate, plus the apiserver-etcd-client and
healthcheck-client certificates kubeadm's external-etcd topology expects.

The etcd CA signs server and client certificates (the CA kubeadm is given);
a separate peer CA signs only the members' peer certificates, and the peer
port trusts only it. With one CA, any client certificate (an apiserver's)
would be admitted on 2380 by TLS; etcd 3.4/3.5 cannot restrict peer CNs from
a config file.

Every key is a `tls.PrivateKey` whose private outputs are secret; each
certificate carries only the usages its role needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_tls as tls

from config.spec import PkiSpec
from config.topology import Topology

PRIVATE_OUTPUTS = ["private_key_pem", "private_key_openssh", "private_key_pem_pkcs8"]

# etcd's grpc-gateway dials the member's own client port with the *server*
# certificate, so a server cert also needs client auth (kubeadm issues its
# etcd/server cert the same way). Peers are both ends of a connection.
SERVER_USES = ("digital_signature", "key_encipherment", "server_auth", "client_auth")
PEER_USES = ("digital_signature", "key_encipherment", "server_auth", "client_auth")
CLIENT_USES = ("digital_signature", "key_encipherment", "client_auth")
CA_USES = ("cert_signing", "crl_signing", "digital_signature")
CA_VALIDITY_HOURS = 10 * 8760


@dataclass(frozen=True)
class IssuedCert:
    cert_pem: pulumi.Output
    key_pem: pulumi.Output          # secret
    not_after: pulumi.Output        # its expiry (RFC 3339), for people: restart steps and outputs show it


@dataclass(frozen=True)
class MemberCerts:
    server: IssuedCert
    peer: IssuedCert


@dataclass(frozen=True)
class PkiArgs:
    spec: PkiSpec
    topology: Topology


def private_key(name: str, algorithm: str, parent: pulumi.Resource) -> tls.PrivateKey:
    kwargs = {"ecdsa_curve": "P256"} if algorithm == "ECDSA" else {"rsa_bits": 2048}
    return tls.PrivateKey(name, algorithm=algorithm, **kwargs, opts=pulumi.ResourceOptions(
        parent=parent, additional_secret_outputs=PRIVATE_OUTPUTS))


class Pki(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output
    peer_ca_cert_pem: pulumi.Output
    members: dict[str, MemberCerts]
    apiserver_etcd_client: IssuedCert
    healthcheck_client: IssuedCert

    def __init__(self, name: str, args: PkiArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:pki:Pki", name, None, opts)
        self._name = name
        self._spec = args.spec
        subject_org = args.spec.organization

        self._ca = self._new_ca("etcd-ca", subject_org)
        self._peer_ca = self._new_ca("etcd-peer-ca", subject_org)
        self.ca_cert_pem = self._ca[1].cert_pem
        self.peer_ca_cert_pem = self._peer_ca[1].cert_pem
        # every certificate's expiry by name: the `summary` output
        self.not_after: dict[str, pulumi.Output] = {
            "etcd-ca": self._ca[1].validity_end_time, "etcd-peer-ca": self._peer_ca[1].validity_end_time}

        self.members = {}
        for node in args.topology.etcd:
            dns, ips = args.topology.etcd_server_sans(node)
            server = self._issue(f"{node.name}-server", node.name, SERVER_USES, dns, ips)
            dns, ips = args.topology.etcd_peer_sans(node)
            peer = self._issue(f"{node.name}-peer", node.name, PEER_USES, dns, ips, ca=self._peer_ca)
            self.members[node.name] = MemberCerts(server=server, peer=peer)

        self.apiserver_etcd_client = self._issue(
            "apiserver-etcd-client", "kube-apiserver-etcd-client", CLIENT_USES, (), ())
        self.healthcheck_client = self._issue(
            "healthcheck-client", "kube-etcd-healthcheck-client", CLIENT_USES, (), ())

        self.register_outputs({"ca_cert_pem": self.ca_cert_pem})

    def _new_ca(self, key: str, organization: str) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
        ca_key = private_key(f"{self._name}-{key}", self._spec.key_algorithm, self)
        cert = tls.SelfSignedCert(
            f"{self._name}-{key}",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            set_subject_key_id=True,
            allowed_uses=list(CA_USES),
            validity_period_hours=CA_VALIDITY_HOURS,
            # Re-issuing a CA invalidates every cert: renew it a year early.
            early_renewal_hours=8760,
            subject=tls.SelfSignedCertSubjectArgs(common_name=key, organization=organization),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return ca_key, cert

    def _issue(self, key: str, common_name: str, uses: Sequence[str],
               dns_names: Sequence[str], ip_addresses: Sequence[str],
               ca: tuple[tls.PrivateKey, tls.SelfSignedCert] | None = None) -> IssuedCert:
        ca_key, ca_cert = ca or self._ca
        name = f"{self._name}-{key}"
        pk = private_key(name, self._spec.key_algorithm, self)
        csr = tls.CertRequest(
            name,
            private_key_pem=pk.private_key_pem,
            # A new rotation label changes the request, so the cert is
            # re-issued (same key); the CAs are left alone.
            subject=tls.CertRequestSubjectArgs(
                common_name=common_name, organization=self._spec.organization,
                organizational_unit=f"rotation {self._spec.rotation}" if self._spec.rotation else None),
            dns_names=list(dns_names),
            ip_addresses=list(ip_addresses),
            opts=pulumi.ResourceOptions(parent=self),
        )
        cert = tls.LocallySignedCert(
            name,
            cert_request_pem=csr.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca_cert.cert_pem,
            allowed_uses=list(uses),
            validity_period_hours=self._spec.validity_hours,
            early_renewal_hours=self._spec.early_renewal_hours,
            set_subject_key_id=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.not_after[key] = cert.validity_end_time
        return IssuedCert(cert_pem=cert.cert_pem, key_pem=pulumi.Output.secret(pk.private_key_pem),
                          not_after=cert.validity_end_time)
