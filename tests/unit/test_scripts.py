"""Every shipped shell script, as the node runs it (not the `sudo bash -c`
wrapper around it): `bash -n` parses it, and `shellcheck -S warning` finds
nothing in it with the helpers it sources inlined (so their variables and
functions count as used)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components import steps

COMPONENTS = Path(steps.__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in COMPONENTS.rglob("*.sh"))
LIBS = {name: path for name, path in steps.LIBS.items() if name.endswith(".sh")}
REFERENCED = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)\b")
BASH_OWN = {"BASH_SOURCE", "SECONDS", "RANDOM", "BASH_REMATCH", "PIPESTATUS"}   # set by bash itself
ASSIGNED = re.compile(r"^\s*(?:local |declare -A |export )?([A-Z][A-Z0-9_]*)=", re.M)


def values_for(text: str) -> dict:
    """A stand-in value for each UPPER_CASE variable a script reads and no
    helper or the script itself assigns: what its step's prelude provides."""
    libs = "".join(p.read_text() for p in LIBS.values())
    return {n: "x" for n in set(REFERENCED.findall(text)) - set(ASSIGNED.findall(text + libs)) - BASH_OWN}


def test_every_script_is_found():
    names = {steps.step_name(p) for p in SCRIPTS}
    assert {"etcd/start.sh", "etcd/restart.sh", "etcd/restore/data.sh", "steps/helpers.sh",
            "kubernetes/apiserver-restart.sh", "loadbalancer/haproxy.sh"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=steps.step_name)
def test_the_script_a_node_runs_parses(path: Path):
    body = steps.step_body(path, values_for(path.read_text()), libs=["etcd.sh"])
    res = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_bash_n_sees_a_broken_step(tmp_path):
    """The check above fails on a syntax error inside a step (the old one,
    which parsed only the quoted wrapper, did not)."""
    broken = tmp_path / "broken.sh"
    broken.write_text("if true; then\n  echo unfinished\n")
    body = steps.prelude({}) + broken.read_text()
    assert subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True).returncode != 0
    wrapped = steps.sudo_bash(body)
    assert subprocess.run(["bash", "-n", "-c", wrapped], capture_output=True, text=True).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
@pytest.mark.parametrize("path", SCRIPTS, ids=steps.step_name)
def test_shellcheck_finds_no_warning(path: Path):
    text = path.read_text()
    body = steps.prelude(values_for(text)) + "".join(p.read_text() for p in LIBS.values()) + text
    res = subprocess.run(["shellcheck", "-S", "warning", "-s", "bash", "-e", "SC1090,SC1091", "-"],
                         input=body, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def _cert(tmp_path: Path, name: str, days: int) -> Path:
    out = tmp_path / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / f"{name}.key"), "-out", str(out), "-days", str(days),
                    "-subj", f"/O=hakube/CN={name}"], check=True, capture_output=True)
    return out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed (.ci/run installs it)")
def test_the_cert_check_fails_naming_a_certificate_inside_its_window_and_the_remedy(tmp_path):
    """The script hakube-cert-check's timer runs, as cert_check renders it,
    against real certificates: one expiring in 2 days with a 3-day window
    fails, naming the file, its subject, the date and `pulumi up`; kubeadm's
    own name `kubeadm certs renew`; all far from expiry pass."""
    near, far, kubeadm = _cert(tmp_path, "near", 2), _cert(tmp_path, "far", 400), _cert(tmp_path, "kubeadm", 2)
    _, script = steps.cert_check("dev", 3, "daily", [str(near), str(far)], [str(tmp_path / "kube*.crt")])
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert any(str(near) in x and "CN=near,O=hakube" in x and re.search(r"in (1 day|2 days) ", x)
               and "`pulumi up` of stack dev" in x for x in lines), res.stderr
    assert any(str(kubeadm) in x and "kubeadm certs renew all" in x for x in lines), res.stderr
    assert not any(str(far) in x for x in lines) and "2 of 3 certificates" in res.stderr
    _, script = steps.cert_check("dev", 3, "daily", [str(far)])
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert res.returncode == 0 and "1 certificates" in res.stdout and "more than 3 days" in res.stdout


KUBECTL = """#!/bin/bash
# a stand-in kubectl: `get nodes` prints $NODES_LISTED (lines "name status"); the rest succeeds quietly
case "$*" in
  *"get pods"*) exit 0 ;;
  *"get nodes"*) [ "$*" = "get nodes -o wide" ] && exit 0; printf '%b' "$NODES_LISTED" ;;
  *) exit 0 ;;
esac
"""


def _stand_ins(tmp_path: Path, tools: dict[str, str]) -> Path:
    """Stand-in tools (name -> script) in tmp_path/bin, which goes first in PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool, text in tools.items():
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def _run_body(body: str, tmp_path: Path | None = None, stdin: str | None = None, **env) -> subprocess.CompletedProcess:
    """A step's body under bash, with tmp_path/bin (the stand-ins) first in PATH."""
    path = f"{tmp_path / 'bin'}:/usr/bin:/bin" if tmp_path is not None else "/usr/bin:/bin"
    return subprocess.run(["bash", "-c", body], input=stdin, capture_output=True, text=True,
                          env={"PATH": path, **{k: str(v) for k, v in env.items()}})


def _k8s_body(values: dict, script: str, extra: str = "") -> str:
    """A Kubernetes step as a node runs it: its values, common.sh, `extra` stand-ins, the script."""
    return steps.prelude(values) + LIBS["common.sh"].read_text() + extra + (COMPONENTS / "kubernetes" / script).read_text()


def _run_check(tmp_path: Path, script: str, values: dict, listed: str):
    _stand_ins(tmp_path, {"kubectl": KUBECTL})
    return _run_body(_k8s_body(values, script), tmp_path, NODES_LISTED=listed, POLL_SECONDS=0)


def test_the_kubernetes_checks_count_the_configured_nodes_by_name(tmp_path):
    """Shrinking 3 -> 2 control planes: master-03 is still listed (its VM goes
    after the checks) and Ready; both checks pass on the two configured and
    name the third as not in the stack. A configured node NotReady fails,
    named."""
    listed = "master-01 Ready 1d\\nmaster-02 Ready 1d\\nmaster-03 Ready 1d\\n"
    verify = _run_check(tmp_path, "verify.sh", {"CONTROL_PLANES": "master-01 master-02", "CHECK_NAMESPACE": "x", "ENCRYPTION": ""},
                        listed)
    assert verify.returncode == 0, verify.stderr
    assert "also listed, not in the stack: master-03" in verify.stdout
    ready = _run_check(tmp_path, "nodes-ready.sh", {"NODES": "master-01 master-02"}, listed)
    assert ready.returncode == 0, ready.stderr
    down = "master-01 Ready 1d\\nmaster-02 NotReady 1d\\n"
    verify = _run_check(tmp_path, "verify.sh", {"CONTROL_PLANES": "master-01 master-02", "CHECK_NAMESPACE": "x", "ENCRYPTION": ""},
                        down)
    assert verify.returncode == 1 and "control planes not Ready: master-02" in verify.stderr
    ready = _run_check(tmp_path, "nodes-ready.sh", {"NODES": "master-01 master-02 worker-01"}, down)
    assert ready.returncode == 1 and "master-02 worker-01" in ready.stderr


KUBEADM = """#!/bin/bash
# a stand-in kubeadm keeping bootstrap tokens in $TOKENS, one "token ttl" per line
case "$1 $2" in
  "token create") [ "$4" = --ttl ] || exit 2; echo "$3 $5" >>"$TOKENS"; echo "$3" ;;
  "token delete") grep -q "^$3\\\\." "$TOKENS" || { echo "bootstrap token \\"$3\\" not found" >&2; exit 1; }
                  sed -i "/^$3\\\\./d" "$TOKENS" ;;
  "token list") cat "$TOKENS" ;;
  *) exit 2 ;;
esac
"""


def _run_kubeadm_step(tmp_path: Path, script: str, values: dict):
    _stand_ins(tmp_path, {"kubeadm": KUBEADM})
    return _run_body(_k8s_body(values, script), tmp_path, TOKENS=tmp_path / "tokens")


def test_a_join_token_lives_until_its_join_is_done_and_each_run_mints_a_new_secret(tmp_path):
    """join-token.sh mints `<id>.<16 hex>` with no expiry (a join retried
    weeks later still holds a valid one), replacing an earlier token of the
    same id; join-done.sh deletes it and is safe to run again."""
    (tmp_path / "tokens").write_text("other1.0123456789abcdef 24h0m0s\n")
    ca = _cert(tmp_path, "ca", 3650)
    values = {"TOKEN_ID": "a1b2c3", "JOINER": "worker-01", "CA_CERT": str(ca)}
    first = _run_kubeadm_step(tmp_path, "join-token.sh", values)
    assert first.returncode == 0, first.stderr
    creds = json.loads(first.stdout)
    assert re.fullmatch(r"a1b2c3\.[0-9a-f]{16}", creds["token"])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", creds["caCertHash"])
    assert (tmp_path / "tokens").read_text().splitlines() == ["other1.0123456789abcdef 24h0m0s", f"{creds['token']} 0"]
    again = json.loads(_run_kubeadm_step(tmp_path, "join-token.sh", values).stdout)
    assert again["token"] != creds["token"]
    assert (tmp_path / "tokens").read_text().splitlines() == ["other1.0123456789abcdef 24h0m0s", f"{again['token']} 0"]
    for _ in range(2):
        done = _run_kubeadm_step(tmp_path, "join-done.sh", values)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "tokens").read_text().splitlines() == ["other1.0123456789abcdef 24h0m0s"]


# stand-ins for the package tools: installed versions from $PKG_<name>, every
# apt-get call recorded in $CALLS (none may happen when the upgrade is refused)
PKG_TOOLS = {
    "dpkg-query": '#!/bin/bash\nv="PKG_${@: -1}"; [ -n "${!v}" ] && printf "%s-1.1" "${!v}"\n',
    "apt-get": '#!/bin/bash\necho "apt-get $*" >>"$CALLS"\n',
    "apt-mark": "#!/bin/bash\nexit 0\n",
    "apt-cache": "#!/bin/bash\nexit 0\n",                  # a repository without the wanted release
}


def _run_upgrade(tmp_path: Path, want: str, role: str, cluster: str, kubelet: str, kubeadm: str):
    _stand_ins(tmp_path, PKG_TOOLS)
    manifest = tmp_path / "kube-apiserver.yaml"
    manifest.write_text(f"spec:\n  containers:\n  - command:\n    - kube-apiserver\n"
                        f"    image: registry.k8s.io/kube-apiserver:v{cluster}\n")
    calls = tmp_path / "calls"
    calls.write_text("")
    values = {"K8S_VERSION": want, "ROLE": role, "DRAINED_MARK": "hakube.io/upgrade-drained",
              "DRAIN_TIMEOUT": 300, "APISERVER_MANIFEST": str(manifest)}
    res = _run_body(_k8s_body(values, "upgrade.sh"), tmp_path, CALLS=calls, PKG_kubelet=kubelet, PKG_kubeadm=kubeadm)
    return res, calls.read_text()


@pytest.mark.parametrize("want, cluster, refusal", [
    ("1.37.2", "1.35.4", "1.35.4 -> 1.36 -> 1.37"),            # a skipped minor: the path, one `up` per step
    ("1.38.0", "1.36.4", "1.36.4 -> 1.37 -> 1.38"),
    ("1.35.9", "1.36.4", "would be a downgrade"),
    ("1.36.3", "1.36.4", "would be a downgrade"),               # a patch back too
])
def test_an_upgrade_that_skips_a_minor_or_goes_back_is_refused_before_anything_changes(tmp_path, want, cluster,
                                                                                        refusal):
    res, calls = _run_upgrade(tmp_path, want, "first", cluster, kubelet=cluster, kubeadm=cluster)
    assert res.returncode == 1 and refusal in res.stderr, res.stderr
    assert "hakube:kubernetes.version" in res.stderr
    assert calls == ""                                          # no package touched


def test_a_node_already_at_the_version_is_left_alone_and_one_minor_up_proceeds(tmp_path):
    res, calls = _run_upgrade(tmp_path, "1.36.4", "first", "1.36.4", kubelet="1.36.4", kubeadm="1.36.4")
    assert res.returncode == 0 and "already runs Kubernetes 1.36.4" in res.stdout and calls == ""
    # a worker: its own kubelet decides (the cluster's version is the first control plane's business)
    res, calls = _run_upgrade(tmp_path, "1.37.2", "worker", "1.37.2", kubelet="1.35.0", kubeadm="1.35.0")
    assert res.returncode == 1 and "1.35.0 -> 1.36 -> 1.37" in res.stderr and calls == ""
    # one minor up gets past the policy to the package repository (the stand-in apt has no kubeadm)
    res, calls = _run_upgrade(tmp_path, "1.37.2", "first", "1.36.4", kubelet="1.36.4", kubeadm="1.36.4")
    assert "no kubeadm 1.37.2 in the package repository" in res.stderr and calls.startswith("apt-get update")


@pytest.mark.parametrize("installed, installs", [("", True), ("1.36.4", False), ("1.37.2", False)])
def test_the_packages_step_installs_only_on_a_node_without_kubeadm(tmp_path, installed, installs):
    """A version change makes every node's packages step an update (the
    version is in its text); on a node that has kubeadm it must change no
    package: each node's turn is its upgrade step."""
    _stand_ins(tmp_path, {**PKG_TOOLS, "apt-cache": '#!/bin/bash\necho " kubeadm | 1.37.2-1.1 | https://pkgs.k8s.io/x Packages"\n'})
    calls = tmp_path / "calls"
    calls.write_text("")
    # the host's files stay untouched: what writes under /etc is stood in
    stand_ins = "put_file() { :; }\ninstall() { :; }\ncurl() { :; }\ngpg() { :; }\nsystemctl() { :; }\nCHANGED=0\n"
    body = _k8s_body({"K8S_VERSION": "1.37.2", "K8S_MINOR": "1.37", "K8S_PACKAGE_REPO": "https://pkgs.k8s.io/x"},
                     "packages.sh", extra=stand_ins)
    res = _run_body(body, tmp_path, CALLS=calls, PKG_kubelet=installed, PKG_kubeadm=installed)
    assert res.returncode == 0, res.stderr
    assert ("install" in calls.read_text()) == installs, calls.read_text()
    if installs:
        assert "kubelet=1.37.2-1.1 kubeadm=1.37.2-1.1 kubectl=1.37.2-1.1" in calls.read_text()


RENEW_TOOLS = {
    "kubeadm": '#!/bin/bash\necho "kubeadm $*" >>"$CALLS"\n',
    # containers "<component>-<n>": a stop makes the next `ps` show n+1
    "crictl": """#!/bin/bash
echo "crictl $*" >>"$CALLS"
case "$1" in
  ps) c=$(sed -n 's/.*--name \\^\\([a-z-]*\\)\\$.*/\\1/p' <<<"$*"); echo "$c-$(cat "$STATE/$c" 2>/dev/null || echo 0)" ;;
  stop) shift; for id in "$@"; do c=${id%-*}; echo $((${id##*-} + 1)) >"$STATE/$c"; done ;;
esac
""",
    "curl": '#!/bin/bash\nfor a; do url=$a; done\nfor ip in $DOWN; do [[ $url == *"//$ip:"* ]] && exit 7; done\necho ok\n',
    "sleep": "#!/bin/bash\nexit 0\n",
}


def _run_renewal(tmp_path: Path, apiserver_days: int, admin_days: int, down: str = ""):
    pki, state = tmp_path / "pki", tmp_path / "state"
    for d in (pki, state):
        d.mkdir(parents=True, exist_ok=True)
    _stand_ins(tmp_path, RENEW_TOOLS)
    _cert(pki, "apiserver", apiserver_days)
    admin = _cert(tmp_path, "admin", admin_days)
    import base64
    (tmp_path / "admin.conf").write_text("users:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: "
                                         + base64.b64encode(admin.read_bytes()).decode() + "\n")
    calls = tmp_path / "calls"
    calls.write_text("")
    values = {"RENEW_DAYS": 60, "DELAY_SECONDS": 1200, "API_PORT": 6443, "PEERS": "10.0.0.2 10.0.0.3",
              "ADMIN_USER": "", "PKI_DIR": str(pki), "KUBE_DIR": str(tmp_path)}
    body = steps.prelude(values) + (COMPONENTS / "kubernetes" / "kubeadm-certs-renew.sh").read_text()
    res = _run_body(body, tmp_path, CALLS=calls, STATE=state, DOWN=down, POLL_SECONDS=0)
    return res, calls.read_text()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed (.ci/run installs it)")
def test_kubeadm_certificates_are_renewed_inside_the_window_and_each_component_restarted(tmp_path):
    """The script the renewal timer runs, against real certificates: all
    valid past the window, nothing runs; the apiserver's (or the admin
    kubeconfig's) inside it, `kubeadm certs renew all` and the apiserver,
    controller-manager and scheduler containers restarted one after another,
    each running anew before the next."""
    res, calls = _run_renewal(tmp_path, apiserver_days=365, admin_days=365)
    assert res.returncode == 0 and "nothing to renew" in res.stdout and calls == "", res.stderr
    for apiserver_days, admin_days in ((30, 365), (365, 30)):
        res, calls = _run_renewal(tmp_path / f"{apiserver_days}-{admin_days}", apiserver_days, admin_days)
        assert res.returncode == 0, res.stderr
        lines = calls.splitlines()
        assert lines[0] == "kubeadm certs renew all"
        stops = [line for line in lines if line.startswith("crictl stop")]
        assert stops == ["crictl stop kube-apiserver-0", "crictl stop kube-controller-manager-0",
                         "crictl stop kube-scheduler-0"]
        assert "renewed" in res.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed (.ci/run installs it)")
def test_kubeadm_certificates_are_not_renewed_while_another_control_plane_is_down(tmp_path):
    res, calls = _run_renewal(tmp_path, apiserver_days=30, admin_days=365, down="10.0.0.3")
    assert res.returncode == 1 and "another control plane stayed not ready" in res.stderr
    assert "the apiserver on 10.0.0.3 is not ready" in res.stdout
    assert "kubeadm" not in calls and "crictl stop" not in calls


ENC_TOOLS = {
    # a running apiserver when $APISERVER is set: `ps` shows it, a stop is recorded
    "crictl": '#!/bin/bash\necho "crictl $*" >>"$CALLS"\n[ "$1" = ps ] && [ -n "$APISERVER" ] && echo apiserver-1\nexit 0\n',
    "curl": "#!/bin/bash\necho ok\n",
    "sleep": "#!/bin/bash\nexit 0\n",
}


def _run_encryption(tmp_path: Path, stage: str, keys: list[str], provider: str = "secretbox",
                    apiserver: bool = False, manifest_flag: bool = True):
    from components.kubernetes.plan import encryption_keys
    _stand_ins(tmp_path, ENC_TOOLS)
    config = tmp_path / "enc" / "encryption-config.yaml"
    manifest = tmp_path / "kube-apiserver.yaml"
    flag = f"    - --encryption-provider-config={config}\n" if manifest_flag else ""
    manifest.write_text("spec:\n  containers:\n  - command:\n    - kube-apiserver\n" + flag)
    calls = tmp_path / "calls"
    calls.write_text("")
    values = {"STAGE": stage, "ENC_CONFIG": str(config), "ENC_PROVIDER": provider, "KEYS": " ".join(keys),
              "API_PORT": 6443, "APISERVER_MANIFEST": str(manifest)}
    res = _run_body(_k8s_body(values, "encryption.sh"), tmp_path, stdin=encryption_keys(keys, "SEED"), CALLS=calls,
                    APISERVER="1" if apiserver else "", POLL_SECONDS=0)
    doc = yaml.safe_load(config.read_text()) if config.exists() else None
    return res, doc, calls.read_text()


def _active_and_all(doc) -> tuple[str, list[str]]:
    """The EncryptionConfiguration as kube-apiserver reads it (apiserver.config.k8s.io/v1, as the
    reference documents it): secrets only, one provider with its keys, identity last."""
    import base64
    assert doc["apiVersion"] == "apiserver.config.k8s.io/v1" and doc["kind"] == "EncryptionConfiguration"
    assert set(doc) == {"apiVersion", "kind", "resources"} and len(doc["resources"]) == 1
    res = doc["resources"][0]
    assert set(res) == {"resources", "providers"} and res["resources"] == ["secrets"]
    first, identity = res["providers"]
    assert identity == {"identity": {}}
    (provider, body), = first.items()
    assert provider in ("secretbox", "aescbc") and set(body) == {"keys"}
    for key in body["keys"]:
        assert set(key) == {"name", "secret"}
        assert len(base64.b64decode(key["secret"], validate=True)) == 32    # secretbox's size; AES-256
    names = [k["name"] for k in body["keys"]]
    return names[0], names


def test_a_key_rotation_adds_then_uses_the_new_key_and_a_later_run_drops_the_old(tmp_path):
    """The staged EncryptionConfiguration the steps write, run for real:
    initial writes the list once and never again; `add` lists the new key
    but keeps encrypting with the current one; `use` makes the new one
    active; dropping the old one is the list exactly. A secret for a name is
    the same every time; a changed file restarts a running apiserver."""
    res, doc, _ = _run_encryption(tmp_path, "initial", ["key1"])
    assert res.returncode == 0, res.stderr
    assert _active_and_all(doc) == ("key1", ["key1"])
    secret1 = doc["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"]
    res, doc, _ = _run_encryption(tmp_path, "initial", ["key2", "key1"])
    assert "present" in res.stdout and _active_and_all(doc) == ("key1", ["key1"])      # initial never rewrites
    res, doc, calls = _run_encryption(tmp_path, "add", ["key2", "key1"], apiserver=True)
    assert res.returncode == 0, res.stderr
    assert _active_and_all(doc) == ("key1", ["key1", "key2"]) and "crictl stop apiserver-1" in calls
    assert doc["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"] == secret1
    res, doc, calls = _run_encryption(tmp_path, "add", ["key2", "key1"], apiserver=True)
    assert "unchanged" in res.stdout and "crictl stop" not in calls                    # a re-run restarts nothing
    res, doc, _ = _run_encryption(tmp_path, "use", ["key2", "key1"], apiserver=True)
    assert res.returncode == 0, res.stderr
    assert _active_and_all(doc) == ("key2", ["key2", "key1"])
    res, doc, _ = _run_encryption(tmp_path, "add", ["key2"], apiserver=True)
    assert res.returncode == 0, res.stderr
    assert _active_and_all(doc) == ("key2", ["key2"])


def test_encryption_refuses_an_apiserver_made_without_it_and_a_provider_change(tmp_path):
    res, _, calls = _run_encryption(tmp_path, "add", ["key1"], manifest_flag=False, apiserver=True)
    assert res.returncode == 1 and "created without" in res.stderr and "encryption.enabled: false" in res.stderr
    assert "crictl stop" not in calls
    _run_encryption(tmp_path, "initial", ["key1"])
    res, doc, _ = _run_encryption(tmp_path, "add", ["key1"], provider="aescbc")
    assert res.returncode == 1 and "not supported" in res.stderr
    assert _active_and_all(doc)[0] == "key1" and "secretbox" in doc["resources"][0]["providers"][0]


def _run_registry(tmp_path: Path, value: bytes, encryption: str = "secretbox"):
    (tmp_path / "value").write_bytes(value)
    # etcd as a stand-in for etcdctl_hc: the namespace's key exists; the Secret's value is $VALUE's bytes
    stand_in = ('etcdctl_hc() { case "$*" in *--keys-only*) echo "$2" ;; '
                '*--print-value-only*) cat "$VALUE" ;; esac; }\n')
    values = {"CHECK_NAMESPACE": "ns", "CHECK_SECRET": "s", "CHECK_PROBE": "hakube-plaintext-probe",
              "ENCRYPTION": encryption, "ETCD_ENDPOINTS": "https://127.0.0.1:2379", "PKI_DIR": "/nonexistent"}
    return _run_body(_k8s_body(values, "registry.sh", extra=stand_in), VALUE=tmp_path / "value", POLL_SECONDS=0)


def test_the_registry_check_finds_the_secret_encrypted_and_fails_on_plain_text(tmp_path):
    """The seed's /registry check, extended: etcd's value of the check
    Secret must start k8s:enc:<provider>:v1:<key>: and hold no plain text.
    Values as kube-apiserver stores them: encrypted (prefix, then cipher
    bytes) or, without encryption, protobuf with the value in the clear."""
    encrypted = b"k8s:enc:secretbox:v1:key2:" + bytes(range(256))
    plain = b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x40\n\x01s\x12\x02ns" + b"\x1a\x16hakube-plaintext-probe"
    ok = _run_registry(tmp_path, encrypted)
    assert ok.returncode == 0 and "stored encrypted (k8s:enc:secretbox:v1:key2)" in ok.stdout, ok.stderr
    bad = _run_registry(tmp_path, plain)
    assert bad.returncode == 1 and "plain text" in bad.stderr
    other = _run_registry(tmp_path, b"k8s:enc:aescbc:v1:key1:" + bytes(range(64)))
    assert other.returncode == 1 and "not stored with secretbox" in other.stderr
    off = _run_registry(tmp_path, plain, encryption="")               # encryption off: the namespace only
    assert off.returncode == 0 and "found in the external etcd" in off.stdout


def _run_recover(tmp_path: Path, *, data: bool, active: bool, members: list[str], others_healthy: bool = False):
    """recover.sh with stand-ins for systemctl and etcdctl: this member has
    data or not, runs or not, answers with `members` (names) as its
    membership; the other endpoints answer a quorum read or not."""
    data_dir = tmp_path / "etcd"
    tmp_path.mkdir(parents=True, exist_ok=True)
    if data:
        (data_dir / "member" / "wal").mkdir(parents=True)
        (data_dir / "member" / "wal" / "0.wal").write_text("x")
    calls = tmp_path / "calls"
    calls.write_text("")
    # what `etcdctl member list -w json` prints (tests/unit/etcd_answers: real releases)
    listed = json.dumps({"members": [{"ID": i, "name": m, "peerURLs": [f"https://10.0.0.{i}:2380"],
                                      "clientURLs": [f"https://10.0.0.{i}:2379"]} for i, m in enumerate(members, 1)]})
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "etcd.py").write_text(steps.LIBS["etcd.py"].read_text())
    stand_ins = f"""
HAKUBE_LIB_DIR={libdir}
systemctl() {{ echo "systemctl $*" >>"$CALLS"; [ "$1 $2" = "is-active --quiet" ] && return {0 if active else 3}; return 0; }}
etcdctl_hc() {{
  case "$*" in
    *"member list -w json"*) echo '{listed}' ;;
    *"endpoint health"*) if [ -n "${{ENDPOINTS:-}}" ] && [ "$ENDPOINTS" != "https://127.0.0.1:2379" ]; then
                           return {0 if others_healthy else 1}; fi; return {0 if active else 1} ;;
  esac
}}
"""
    values = {"ETCD_DATA_DIR": data_dir, "ETCD_ENDPOINTS": "https://10.0.0.1:2379,https://10.0.0.2:2379",
              "MEMBER_NAME": "etcd-01", "MEMBER_PEER_URL": "https://10.0.0.1:2380",
              "MEMBER_CLIENT_URL": "https://10.0.0.1:2379", "ETCD_CONFIG_FILE": tmp_path / "etcd.yml",
              "PKI_DIR": tmp_path, "WAIT_TRIES": 1, "ETCD_INITIAL_CLUSTER": "etcd-01=https://10.0.0.1:2380"}
    body = (steps.prelude(values) + LIBS["common.sh"].read_text() + LIBS["etcd.sh"].read_text() + stand_ins
            + (COMPONENTS / "etcd" / "recover.sh").read_text())
    return _run_body(body, None, CALLS=calls), calls.read_text()


def test_a_recovery_is_refused_while_a_quorum_answers_or_with_no_data_and_a_recovered_member_is_done(tmp_path):
    """etcd.recover.from's step: nothing is stopped while this member's
    quorum answers with other members listed, while another member answers a
    quorum read (the survivor may be the one cut off), or without data here;
    a one-member cluster of this member that answers is a recovery already
    done (a re-run after a failure)."""
    res, calls = _run_recover(tmp_path / "a", data=True, active=True, members=["etcd-01", "etcd-02", "etcd-03"])
    assert res.returncode == 1 and "a quorum answers at etcd-01 (members: etcd-01 etcd-02 etcd-03)" in res.stderr
    assert "stop" not in calls
    res, calls = _run_recover(tmp_path / "b", data=True, active=False, members=[], others_healthy=True)
    assert res.returncode == 1 and "a quorum answers at https://10.0.0.2:2379" in res.stderr and "stop" not in calls
    res, calls = _run_recover(tmp_path / "c", data=False, active=False, members=[])
    assert res.returncode == 1 and "it has no etcd data" in res.stderr and "stop" not in calls
    res, calls = _run_recover(tmp_path / "d", data=True, active=True, members=["etcd-01"])
    assert res.returncode == 0 and "is a one-member cluster that answers: recovered" in res.stdout, res.stderr
    assert "stop" not in calls


@pytest.mark.parametrize("fs,values,rc,flags,says", [
    ("cgroup2fs", {}, 0, "", ""),
    ("cgroup2fs", {"ALLOW_CGROUP_V1": 1, "CGROUP_V1_PREFLIGHT": "SystemVerification"}, 0, "", ""),
    ("tmpfs", {}, 1, "", "hakube:kubernetes.allowCgroupV1: true"),
    ("tmpfs", {"ALLOW_CGROUP_V1": 1, "CGROUP_V1_PREFLIGHT": "SystemVerification"}, 0,
     "--ignore-preflight-errors=SystemVerification", ""),
])
def test_kubeadm_runs_on_cgroup_v1_only_when_the_stack_allows_it(fs, values, rc, flags, says):
    """What kubeadm init and join get on a node (kubeadm_cgroup_args, before
    either runs): nothing on cgroup v2; on v1 (/sys/fs/cgroup a tmpfs) a
    refusal naming the key, or, with the key, SystemVerification skipped."""
    stat = f'stat() {{ [ "$*" = "-fc %T /sys/fs/cgroup" ] && echo {fs}; }}\n'
    body = steps.prelude(values) + LIBS["common.sh"].read_text() + stat + "kubeadm_cgroup_args\n"
    res = _run_body(body)
    assert (res.returncode, res.stdout.strip()) == (rc, flags), res.stderr
    assert says in res.stderr
    if rc:
        assert f"/sys/fs/cgroup is {fs}" in res.stderr


# `containerd config default` as containerd 1.6 (Debian bookworm) and 2.x
# print it, cut to the lines the containerd step edits and their neighbours.
CONTAINERD_1 = '''version = 2
[plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      sandbox_mode = "podsandbox"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
'''
CONTAINERD_2 = '''version = 3
[plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          sandboxer = 'podsandbox'
          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            SystemdCgroup = false
'''


@pytest.mark.parametrize("default", [CONTAINERD_1, CONTAINERD_2], ids=["containerd-1.6", "containerd-2"])
def test_containerd_runs_pods_on_kubeadms_pause_image_and_the_systemd_cgroup_driver(tmp_path, default):
    """The containerd step's config: SystemdCgroup on, the sandbox image the
    one kubeadm names (no other key touched: sandbox_mode, sandboxer); a
    default config without the key fails the step, naming it."""
    from components.kubernetes import payloads as kp
    from config import load, raw_from_stack_file
    spec = load(raw_from_stack_file(COMPONENTS.parent / "Pulumi.dev.yaml"), "dev")
    pause = kp.pause_image(spec)
    assert pause == "registry.k8s.io/pause:3.10.2"          # 1.36's kubeadm (versions.KUBERNETES)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "default.toml").write_text(default)
    stand_ins = f"""
containerd() {{ if [ "$1" = config ]; then cat {tmp_path}/default.toml; else echo "containerd stand-in"; fi; }}
systemctl() {{ return 0; }}
put_file() {{ cp "$1" "{out}/$(basename "$2")"; CHANGED=1; }}
"""
    values = {"CRI_SOCKET": f"unix://{tmp_path}/sock", "PAUSE_IMAGE": pause}
    body = _k8s_body(values, "containerd.sh", stand_ins).replace('[ -S "${CRI_SOCKET#unix://}" ]', "true")
    res = _run_body(body)
    assert res.returncode == 0, res.stderr
    config = (out / "config.toml").read_text()
    assert "SystemdCgroup = true" in config and "SystemdCgroup = false" not in config
    assert (f'sandbox_image = "{pause}"' if "sandbox_image" in default else f"sandbox = '{pause}'") in config
    assert config.replace(pause, "X") == default.replace("false", "true").replace(
        "registry.k8s.io/pause:3.6", "X").replace("registry.k8s.io/pause:3.10", "X"), config
    (tmp_path / "default.toml").write_text(default.replace("sandbox", "other"))
    res = _run_body(body)
    assert res.returncode == 1 and f"names no sandbox image to set to {pause}" in res.stderr
