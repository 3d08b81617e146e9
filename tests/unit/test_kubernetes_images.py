"""The image archives tools/kubernetes_images.py writes: an OCI image layout
whose every digest and size is the blob's own, named as kubeadm asks for the
image (containerd reads the name from the index's annotation, Docker from
manifest.json). That containerd imports and runs them is the lab's test
(tests/lab/test_lab.py, a pod from the kube-proxy image)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from tools import kubernetes_images as ki


def read(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_an_archive_is_an_oci_layout_whose_digests_are_its_blobs(tmp_path):
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    binary.chmod(0o755)
    image = ki.Image("registry.k8s.io/pause:3.10.2", {"/pause": binary}, ["/pause"])
    files = {"/pause": binary, "/usr/sbin/iptables": "xtables-nft-multi"}
    parts = read(ki.write_archive(image, files, tmp_path))
    assert json.loads(parts["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(parts["index.json"])
    [entry] = index["manifests"]
    assert entry["annotations"] == {"io.containerd.image.name": "registry.k8s.io/pause:3.10.2",
                                    "org.opencontainers.image.ref.name": "3.10.2"}

    def blob(descriptor: dict) -> bytes:
        data = parts["blobs/sha256/" + descriptor["digest"].split(":")[1]]
        assert descriptor["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert descriptor["size"] == len(data)
        return data

    manifest = json.loads(blob(entry))
    config = json.loads(blob(manifest["config"]))
    [layer_desc] = manifest["layers"]
    layer = gzip.decompress(blob(layer_desc))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"] and config["os"] == "linux"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["pause"].mode == 0o755 and members["pause"].uid == 0 and members["pause"].mtime == 0
    assert members["usr/sbin/iptables"].issym() and members["usr/sbin/iptables"].linkname == "xtables-nft-multi"
    assert members["usr"].isdir() and members["usr/sbin"].isdir()
    docker = json.loads(parts["manifest.json"])
    assert docker == [{"Config": "blobs/sha256/" + manifest["config"]["digest"].split(":")[1],
                       "RepoTags": ["registry.k8s.io/pause:3.10.2"],
                       "Layers": ["blobs/sha256/" + layer_desc["digest"].split(":")[1]]}]


def test_the_same_files_give_the_same_image(tmp_path):
    """mtime 0 and root ownership everywhere: an image's digest is a fact of
    its files, so a rebuild on another day imports as the same image."""
    binary = tmp_path / "coredns"
    binary.write_bytes(b"same bytes")
    image = ki.Image("registry.k8s.io/coredns/coredns:v1.14.2", {"/coredns": binary}, ["/coredns"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = read(ki.write_archive(image, image.files, tmp_path / "a"))
    binary.touch()
    second = read(ki.write_archive(image, image.files, tmp_path / "b"))
    assert first["index.json"] == second["index.json"]
