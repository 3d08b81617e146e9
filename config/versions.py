"""The releases hakube knows, each row with where it was confirmed. Config
validation, the defaults, the upgrade policy and `make versions` read this.

Sources (read 2026-11-25):
- KUBESPRAY: kubernetes-sigs/kubespray roles/kubespray_defaults/vars/main/checksums.yml
  at 46dbdd3994b32640bcd806b0097f50e8fdf1d514 (2026-08-21, "Patch versions
  updates"): the sha256 of etcd's release tarballs per arch, and the
  Kubernetes patch releases kubespray pins checksums for (kubeadm_checksums).
  Its defaults (vars/main/main.yml etcd_supported_versions) pair Kubernetes
  1.35 and 1.36 with the newest etcd 3.6.x, 1.34 with the newest 3.5.x; its
  only kubeadm template is v1beta4 (roles/kubernetes/control-plane/templates/
  kubeadm-config.v1beta4.yaml.j2). Calico: its newest calicoctl is 3.31.7;
  Flannel: flannel_version 0.28.4 (defaults/main/download.yml).
- K8S_137: kubernetes/kubernetes CHANGELOG/CHANGELOG-1.37.md, v1.37.0-alpha.1
  ("Changelog since v1.36.0"): "Kubeadm: removed the v1beta3 API which was
  deprecated since v1.31" (#136016) and "Updated the default etcd version to
  3.7.0-rc.0" (#139427). v1.37.2 is served as a Go module (k8s.io/kubernetes).
- ETCD_37: etcd CHANGELOG-3.7 ("Removed all deprecated experimental flags",
  #19959; v2 store, v2 discovery and client/v2 gone) and etcd.io
  docs/v3.7/upgrades/upgrade_3_7 (every 3.6 member on 3.6.11+ first).
  `--snapshot-count` stays in 3.7 (etcd #21162, 2026-01), `--max-snapshots`
  goes in 3.8 (#21160). hakube's config file uses no experimental key, so
  it renders 3.5, 3.6 and 3.7 alike (tls-min-version from 3.6 on).
- ETCD_POLICY: etcd.io docs op-guide/versioning: the project maintains the
  current minor and the previous one ("When v3.6 is released, v3.4 goes out
  of support").
- ETCD_36_FLOOR: the upstream upgrade_3_6 guide as of late 2026 (quoted in
  k3s-io/k3s discussion #14908): every 3.5 member on 3.5.32+ first (it said
  3.5.26 before).
Releases confirmed to exist but with no checksum from a source reachable here
(etcd 3.6.15-3.6.16 and 3.7.0-3.7.3, served as Go modules; Calico 3.32/3.33)
are not rows: etcd 3.7.x installs only with `etcd.sha256` given or, without
it, against the release's own SHA256SUMS (a warning says so).
"""
from __future__ import annotations

# etcd: version -> (sha256 of etcd-v<version>-linux-amd64.tar.gz, of -linux-arm64.tar.gz).
# From 3.5.26 on (3.5.32 is the floor of a 3.5 -> 3.6 upgrade, refused below it by etcd's install step).
# Source: KUBESPRAY.
ETCD_SHA256: dict[str, tuple[str, str]] = {
    "3.5.26": ("0a682a91201dc8351d507210bc30b021a11e254eab806f03224b51e8fad29abb",
               "93ac1667df0e178ea6d152476ce4088df4075604fe4bc7f85f4719e863cd030b"),
    "3.5.27": ("0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc",
               "1277309f540c5a0329c428f95455c9f76d24f768c8d28fd2753e891c379053fa"),
    "3.5.28": ("e11b6fab2ffbf0a1d6ee8f6227594045a19e0974ec779c42b8b5bb1942b2abe0",
               "779a741604d2ff45240b277812f6c300bca71754adfd8de1436a3f2df3a18e67"),
    "3.5.29": ("7692f812db0bfeee3a731c45046864cf729e552bad82ce7cb5b507053d033267",
               "10817d916de91fdab373947977682e083f0a1ac7f37650c1b690c2a746e4c269"),
    "3.5.30": ("a495115162845640be08c6cda069ff961260dbced53207c5a83b1b006ff2ea8e",
               "4d19473d2567a58e1dbf556e0813b91d506666e58d23bfd5370660c67639eb5e"),
    "3.5.31": ("e76b75c73b10196dfeb1c52fcdf9f4014e51f3082f65f28fb2e69a7bec1f916b",
               "1fc441acb75486c076db0900470b18da61ee529a5d54df7c619dfc12dd13b984"),
    "3.5.32": ("83532f9290ee89106c4c9d0467220f65623c1faadaab800d727f7beccce4d7dd",
               "89f3ec49bc026c77ab5862c34f0623f09b48ec75e659082c92829669c6e36b3c"),
    "3.5.33": ("5025b5b24d81a9616b6e284ccd439b9a3df055ef8fdcdc142af3ec8f6a3b3c95",
               "0764c5c0acef155f4bfa0487791cc5776adef66315bf16ec0653883bfd463a90"),
    "3.6.0": ("42305b0dcbba7b6fdff0382d0c7b99c42026c88c44847a619ab58cde216725d9",
              "81477b120ef66ff338fe7de63d894e5feec17e6e1f1d98507676832e089d9b58"),
    "3.6.1": ("1324664bfe56d178d1362a57462ca5a7b26a6d2cbe9e1c94b6820e32cb82d673",
              "5f8ed6e314df44128c218decbf0d146cf882583d05c6f6d9023ce905d232aaec"),
    "3.6.2": ("4b5d55d61e2218fab7c1cc1c00b341c469159ecde8cedd575fa858683f67e9f4",
              "79d0a2488967aa07ecfde79158b1dab458158522f834810c2827eecac4695a31"),
    "3.6.3": ("3f3b4aa9785d86322c50b296eebdc7a0a57b27065190154b5858bf6a7512ac10",
              "4b39989093699da7502d1cdd649c412055a2bddd26b3d80ed87d0db31957075c"),
    "3.6.4": ("4d5f3101daa534e45ccaf3eec8d21c19b7222db377bcfd5e5a9144155238c105",
              "323421fa279f4f3d7da4c7f2dfa17d9e49529cb2b4cdf40899a7416bccdde42d"),
    "3.6.5": ("66bad39ed920f6fc15fd74adcb8bfd38ba9a6412f8c7852d09eb11670e88cac3",
              "7010161787077b07de29b15b76825ceacbbcedcb77fe2e6832f509be102cab6b"),
    "3.6.6": ("887afaa4a99f22d802ccdfbe65730a5e79aa5c9ce2c8799c67e9d804c50ecedb",
              "8a15f5427c111ff4692753682374970fb68878401d946c2c28bdad6857db652f"),
    "3.6.7": ("cf8af880c5a01ee5363cefa14a3e0cb7e5308dcf4ed17a6973099c9a7aee5a9a",
              "ef5fc443cf7cc5b82738f3c28363704896551900af90a6d622cae740b5644270"),
    "3.6.8": ("cf9cfe91a4856cb90eed9c99e6aee4b708db2c7888b88a6f116281f04b0ea693",
              "438f56a700d17ce761510a3e63e6fa5c1d587b2dd4d7a22c179c09a649366760"),
    "3.6.9": ("633136f13fcadac52e5c0ddcb97912643af6fcb9cb362e75774d0f96f7666396",
              "b51e433724325b66770019c4819d091b8965d2e81c07571a46e0619da1c8ece6"),
    "3.6.10": ("ed579fafab5701e3aaa95509969e7bc74776a4ae5269d32e3928408b406456ec",
               "e40dc34b7a512b99c651f7700c1014e9b76e02415e2e24365b248966b173524c"),
    "3.6.11": ("8756f7a4eaf921668a83de0bf13c0f65cae9186a165696e3ae8396afe6f557ed",
               "5302f1a6157c34eb0568c75fba9d06da98353576df04399f08645bef634acd2d"),
    "3.6.12": ("d2564bb50b58e52fbaf3bde4a9561a1d04e20cdc761f795580e4d615d5d41355",
               "147afc710e164fa342ad8561bcca8903f3913bd9fb9ae0c83c857b1d868189cc"),
    "3.6.13": ("b4928654aed84d90952620c7144555e4186d795e1e7414e65fe0cf6265fd0465",
               "5ab53ff70301fa9d782fa4b59fdfc1fae49ffdf427a0afb3cd313a93449800fc"),
    "3.6.14": ("ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5",
               "fa1b80565ee6fc2df1ae6f57a508b221f3ecc7d591c317c581cd8281b0842b3e"),
}
ETCD_ARCHES = ("amd64", "arm64")

# etcd minor -> (status, the patch a member of this line must run before the
# cluster moves to the next minor, source). Minors not here are refused.
# "end of life" is accepted only with etcd.allowEndOfLife (a cluster that
# still runs it, until its upgrade): its one way forward is the next line.
ETCD_LINES: dict[int, tuple[str, int | None, str]] = {
    4: ("end of life", None, "ETCD_POLICY: out of support since 3.6"),
    5: ("supported; past upstream's policy since 3.7, still patched (3.5.33)", 32, "ETCD_36_FLOOR"),
    6: ("supported", 11, "ETCD_37"),
    7: ("supported (no pinned checksums yet)", None, "ETCD_37"),
}
ETCD_SOURCE = "kubespray checksums.yml @46dbdd39 (2026-08-21)"

# Kubernetes minor -> (kubeadm config API hakube renders, the etcd line it is
# tested with, the pause image kubeadm names, where confirmed). v1beta4
# arrived in 1.31; v1beta3 is what 1.22-1.30 read. The pause version is
# kubeadm's constants.PauseVersion, read in k8s.io/kubernetes v1.29.6,
# v1.30.14, v1.31.14, v1.32.13, v1.33.13, v1.34.4, v1.35.4, v1.36.3 and v1.37.2:
# containerd's pod sandboxes use it, so the node never fetches a second one.
KUBERNETES = {
    29: ("v1beta3", "3.5", "3.9", "kubeadm v1beta3 reference"),
    30: ("v1beta3", "3.5", "3.9", "kubeadm v1beta3 reference"),
    31: ("v1beta4", "3.5", "3.10", "kubeadm v1beta4 reference"),
    32: ("v1beta4", "3.5", "3.10", "kubeadm v1beta4 reference"),
    33: ("v1beta4", "3.5", "3.10", "kubeadm v1beta4 reference"),
    34: ("v1beta4", "3.5", "3.10.1", "KUBESPRAY etcd_supported_versions['1.34']"),
    35: ("v1beta4", "3.6", "3.10.1", "KUBESPRAY etcd_supported_versions['1.35']"),
    36: ("v1beta4", "3.6", "3.10.2", "KUBESPRAY etcd_supported_versions['1.36'], kubeadm 1.36.0-1.36.4"),
    37: ("v1beta4", "3.7", "3.10.2", "K8S_137: v1beta3 removed, default etcd 3.7"),
}
# KUBESPRAY kubeadm_checksums: the newest patch it pins. Not 1.37: its etcd
# line (3.7) has no pinned checksums here, and 1.36 is paired with the
# default etcd 3.6.x by kubespray; 1.37 is one `kubernetes.version` away.
KUBERNETES_DEFAULT = "1.36.4"

CNI = {   # plugin -> (default version, source)
    "calico": ("3.31.7", "KUBESPRAY calicoctl_binary_checksums (newest)"),
    "flannel": ("0.28.4", "KUBESPRAY flannel_version"),
}


def pause_version(minor: int) -> str:
    """The pause image's tag kubeadm of this minor names."""
    return KUBERNETES[minor][2]


def newest_pinned(minor: int | None = None) -> str | None:
    """The newest etcd release with pinned checksums (of one 3.minor line)."""
    rows = [v for v in ETCD_SHA256 if minor is None or v.startswith(f"3.{minor}.")]
    return max(rows, key=lambda v: tuple(int(p) for p in v.split("."))) if rows else None


def etcd_default() -> str:
    """The newest etcd release with pinned checksums."""
    return newest_pinned()


def etcd_upgrade_floors() -> str:
    """ETCD_LINES' floors as install.sh reads them: "5=32 6=11"."""
    return " ".join(f"{m}={floor}" for m, (_, floor, _) in sorted(ETCD_LINES.items()) if floor)


def etcd_sha256(version: str, arch: str) -> str | None:
    """The pinned sha256 of a release tarball, or None when hakube has no row
    for it (then the install checks the release's own SHA256SUMS)."""
    row = ETCD_SHA256.get(version)
    return row[ETCD_ARCHES.index(arch)] if row and arch in ETCD_ARCHES else None


# The sources above as a reader names them (the keys are this file's shorthand).
SOURCE_NAMES = {
    "KUBESPRAY": "kubespray @46dbdd39",
    "K8S_137": "Kubernetes CHANGELOG-1.37",
    "ETCD_37": "etcd CHANGELOG-3.7 and upgrade_3_7",
    "ETCD_POLICY": "etcd versioning policy",
    "ETCD_36_FLOOR": "etcd upgrade_3_6 guide",
}


def said(source: str) -> str:
    """A row's source as `make versions` prints it: its shorthand spelled out."""
    for key, name in SOURCE_NAMES.items():
        if source == key or source.startswith((key + " ", key + ":")):
            return name + source[len(key):]
    return source


def table() -> str:
    """What `make versions` prints."""
    out = ["etcd (sha256 pinned for amd64 and arm64; " + ETCD_SOURCE + "):"]
    for v in sorted(ETCD_SHA256, key=lambda v: tuple(int(p) for p in v.split("."))):
        out.append(f"  {v:8} amd64 {ETCD_SHA256[v][0][:16]}...  arm64 {ETCD_SHA256[v][1][:16]}..."
                   + ("   (default)" if v == etcd_default() else ""))
    out.append("etcd lines (minor: status, the patch required before the next minor):")
    for minor, (status, floor, source) in sorted(ETCD_LINES.items()):
        out.append(f"  3.{minor}: {status}" + (f"; 3.{minor}.{floor}+ before 3.{minor + 1}" if floor else "")
                   + f"  ({said(source)})")
    out.append("Kubernetes (minor: kubeadm config API, etcd line, pause image, source):")
    for minor, (api, line, pause, source) in sorted(KUBERNETES.items()):
        out.append(f"  1.{minor}: {api}, etcd {line}.x, pause {pause}  ({said(source)})"
                   + (f"   (default {KUBERNETES_DEFAULT})" if KUBERNETES_DEFAULT.startswith(f"1.{minor}.") else ""))
    out.append("CNI (default version, source):")
    for plugin, (version, source) in CNI.items():
        out.append(f"  {plugin} {version}  ({said(source)})")
    return "\n".join(out)


README_BEGIN, README_END = "<!-- make versions: begin -->", "<!-- make versions: end -->"


def readme_block() -> str:
    return f"{README_BEGIN}\n```\n{table()}\n```\n{README_END}"


def update_readme(path: str = "README.md") -> bool:
    """Rewrite the README's copy of the table; True when it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    new = text[:start] + readme_block() + text[end:]
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


def main(argv: list[str]) -> int:
    if argv == ["--readme"]:
        print("README.md updated" if update_readme() else "README.md already current")
    else:
        print(table())
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
