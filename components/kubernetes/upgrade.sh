# This node's turn in a Kubernetes upgrade to $K8S_VERSION, following
# kubeadm's documented procedure, one node at a time: the first control plane
# (ROLE=first: `kubeadm upgrade apply`, the cluster's control plane and
# addons), then each other control plane, then each worker (`kubeadm upgrade
# node`). kubeadm first; then a control plane drains itself (a worker was
# drained by the step before this one, on the first control plane); kubelet
# and kubectl; the kubelet restarted; a control plane waits until it is
# Ready at the new version and uncordons itself.
# Refused before anything changes: a downgrade, or a skipped minor (the path
# is named). A node already at $K8S_VERSION is left alone (a new node, a
# re-run): the script decides from the node what is left to do.
export DEBIAN_FRONTEND=noninteractive
version_of() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null | sed 's/-.*//'; }
minor_of() { cut -d. -f2 <<<"$1"; }
older() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }
manifest=$APISERVER_MANIFEST
kubelet_have=$(version_of kubelet)
if [ "$ROLE" = first ]; then
  # what the cluster runs: this control plane's apiserver image
  have=$(sed -n 's/^ *image: .*kube-apiserver:v\([0-9.]*\)$/\1/p' "$manifest")
  [ -n "$have" ] || { echo "no kube-apiserver image version in $manifest" >&2; exit 1; }
else
  have=$kubelet_have
fi
[ -n "$have" ] || { echo "$(hostname) has no kubelet installed: its packages step did not run" >&2; exit 1; }
if [ "$have" = "$K8S_VERSION" ] && [ "$kubelet_have" = "$K8S_VERSION" ] &&
   [ "$(version_of kubeadm)" = "$K8S_VERSION" ]; then
  echo "$(hostname) already runs Kubernetes $K8S_VERSION"
  exit 0
fi
if older "$K8S_VERSION" "$have"; then
  echo "$(hostname) runs Kubernetes $have: $K8S_VERSION would be a downgrade, which kubeadm does not do." >&2
  echo "Set hakube:kubernetes.version back to $have (or newer)." >&2
  exit 1
fi
if [ "$(minor_of "$K8S_VERSION")" -gt $(($(minor_of "$have") + 1)) ]; then
  path=""
  for ((m = $(minor_of "$have") + 1; m <= $(minor_of "$K8S_VERSION"); m++)); do path="$path -> 1.$m"; done
  echo "$(hostname) runs Kubernetes $have: kubeadm upgrades one minor at a time." >&2
  echo "Upgrade through each minor, one \`pulumi up\` per step: $have$path (hakube:kubernetes.version)." >&2
  exit 1
fi
install -d -m 0700 /var/log/hakube
log=/var/log/hakube/kubeadm-upgrade.log
apt-get update -q >/dev/null
pkg=$(apt-cache madison kubeadm | awk -v v="$K8S_VERSION" '$3 ~ "^" v "-" { print $3; exit }')
[ -n "$pkg" ] || { echo "no kubeadm $K8S_VERSION in the package repository (hakube:kubernetes.version)" >&2; exit 1; }
apt-get install -y -q --allow-change-held-packages "kubeadm=$pkg" >/dev/null
apt-mark hold kubeadm >/dev/null
run_kubeadm() {
  if ! "$@" >>"$log" 2>&1; then
    echo "$* failed on $(hostname); the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
case "$ROLE" in
  first) run_kubeadm kubeadm upgrade apply "v$K8S_VERSION" --yes ;;
  *) run_kubeadm kubeadm upgrade node ;;
esac
k() { kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s "$@"; }
node=$(hostname)
if [ "$ROLE" != worker ]; then
  # cordoned by hand before? then it stays cordoned afterwards
  if [ "$(k get node "$node" -o jsonpath='{.spec.unschedulable}')" != true ]; then
    k annotate node "$node" --overwrite "$DRAINED_MARK=$K8S_VERSION" >/dev/null
  fi
  k drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout="${DRAIN_TIMEOUT}s"
fi
apt-get install -y -q --allow-change-held-packages "kubelet=$pkg" "kubectl=$pkg" >/dev/null
apt-mark hold kubelet kubectl >/dev/null
systemctl daemon-reload
systemctl restart kubelet
if [ "$ROLE" != worker ]; then
  uncordon_when_ready "$node" "$K8S_VERSION" "$DRAINED_MARK"
fi
echo "$node: Kubernetes $have -> $K8S_VERSION"
