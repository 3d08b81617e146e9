# The seed's checks, as a gate: no etcd pod or manifest (etcd is external),
# every control plane the stack configures Ready (by name: one the stack is
# removing may still be listed until its VM goes), and a namespace written
# through the API for the etcd-side check to find (and, with encryption at
# rest, a Secret it must find unreadable).
export KUBECONFIG=/etc/kubernetes/admin.conf
pods=$(kubectl -n kube-system get pods -l component=etcd --no-headers 2>/dev/null | wc -l)
if [ "$pods" -ne 0 ] || [ -e /etc/kubernetes/manifests/etcd.yaml ]; then
  echo "found a local etcd (pods: $pods): kubeadm did not use the external cluster" >&2
  exit 1
fi
listed=$(kubectl get nodes -l node-role.kubernetes.io/control-plane --no-headers)
# shellcheck disable=SC2086 # a list of names
missing=$(not_ready "$listed" $CONTROL_PLANES)
if [ -n "$missing" ]; then
  echo "control planes not Ready:$missing (the API lists:" >&2
  echo "$listed)" >&2
  exit 1
fi
others=$(awk -v want=" $CONTROL_PLANES " 'index(want, " " $1 " ") == 0 { printf " %s", $1 }' <<<"$listed")
kubectl get namespace "$CHECK_NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$CHECK_NAMESPACE"
if [ -n "$ENCRYPTION" ]; then
  # a Secret written now (so with the active key), for the etcd-side check to
  # find encrypted: its value must not be readable in etcd
  kubectl -n "$CHECK_NAMESPACE" delete secret "$CHECK_SECRET" --ignore-not-found >/dev/null
  kubectl -n "$CHECK_NAMESPACE" create secret generic "$CHECK_SECRET" --from-literal=probe="$CHECK_PROBE" >/dev/null
fi
echo "no local etcd; control planes Ready: $CONTROL_PLANES${others:+; also listed, not in the stack:$others}; namespace $CHECK_NAMESPACE present"
