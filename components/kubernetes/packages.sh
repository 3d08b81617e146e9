# kubeadm, kubelet and kubectl $K8S_VERSION from the Kubernetes package
# repository (pkgs.k8s.io or a mirror), pinned and held at that version, on a
# node that has none yet. A node that has them keeps its version: a change of
# hakube:kubernetes.version reaches it through its upgrade step, in its turn
# (kubeadm first, the control plane before the kubelets), never here and
# never on every node at once. The repository follows the minor either way.
export DEBIAN_FRONTEND=noninteractive
repo="$K8S_PACKAGE_REPO/v$K8S_MINOR/deb/"
keyring=/etc/apt/keyrings/hakube-kubernetes.gpg
install -d -m 0755 /etc/apt/keyrings
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --retry 5 --connect-timeout 15 "${repo}Release.key" -o "$work/Release.key" || {
  echo "cannot fetch ${repo}Release.key (hakube:kubernetes.packageRepository)" >&2; exit 1; }
gpg --batch --yes --dearmor -o "$work/key.gpg" "$work/Release.key"
put_file "$work/key.gpg" "$keyring" 0644 root:root
echo "deb [signed-by=$keyring] $repo /" >"$work/kubernetes.list"
put_file "$work/kubernetes.list" /etc/apt/sources.list.d/hakube-kubernetes.list 0644 root:root
if [ "$CHANGED" = 1 ] || [ -z "$(apt-cache madison kubeadm 2>/dev/null)" ]; then
  apt-get update -q
fi
want=$(apt-cache madison kubeadm | awk -v v="$K8S_VERSION" '$3 ~ "^" v "-" { print $3; exit }')
[ -n "$want" ] || { echo "$repo has no kubeadm $K8S_VERSION (hakube:kubernetes.version)" >&2; exit 1; }
have=$(dpkg-query -W -f '${Version}' kubeadm 2>/dev/null || true)
if [ -n "$have" ] && [ "$have" != "$want" ]; then
  echo "kubeadm $have installed: an upgrade moves it to $want, one node at a time (its upgrade step; in practice mode, the nextSteps output)"
elif [ "$have" != "$want" ] || [ "$(dpkg-query -W -f '${Version}' kubelet 2>/dev/null)" != "$want" ]; then
  apt-get install -y -q --allow-change-held-packages \
    "kubelet=$want" "kubeadm=$want" "kubectl=$want"
  echo "installed kubeadm/kubelet/kubectl $want (was: ${have:-none})"
else
  echo "kubeadm/kubelet/kubectl $want already installed"
fi
apt-mark hold kubelet kubeadm kubectl >/dev/null
systemctl enable --quiet kubelet
