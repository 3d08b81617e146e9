# The seed's checks, as a gate: no etcd pod or manifest (etcd is external),
# every control plane Ready, and a namespace written through the API for the
# etcd-side check to find.
export KUBECONFIG=/etc/kubernetes/admin.conf
pods=$(kubectl -n kube-system get pods -l component=etcd --no-headers 2>/dev/null | wc -l)
if [ "$pods" -ne 0 ] || [ -e /etc/kubernetes/manifests/etcd.yaml ]; then
  echo "found a local etcd (pods: $pods): kubeadm did not use the external cluster" >&2
  exit 1
fi
cps=$(kubectl get nodes -l node-role.kubernetes.io/control-plane --no-headers | awk '$2 == "Ready"' | wc -l)
[ "$cps" -eq "$EXPECTED_CONTROL_PLANES" ] || {
  echo "$cps of $EXPECTED_CONTROL_PLANES control planes Ready" >&2; exit 1; }
kubectl get namespace "$CHECK_NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$CHECK_NAMESPACE"
echo "no local etcd; $cps control planes Ready; namespace $CHECK_NAMESPACE present"
