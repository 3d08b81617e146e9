# Keep kubeadm's record of the ClusterConfiguration (kube-system/kubeadm-config)
# in step with the config file: later joins and `kubeadm upgrade` read the
# external etcd endpoints from it.
export KUBECONFIG=/etc/kubernetes/admin.conf
current=$(kubectl -n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}')
missing=""
for ep in ${ETCD_ENDPOINTS//,/ }; do
  grep -qF -- "$ep" <<<"$current" || missing="$missing $ep"
done
stale=$(grep -oE 'https://[0-9.]+:2379' <<<"$current" | grep -vxF -f <(tr ',' '\n' <<<"$ETCD_ENDPOINTS") || true)
if [ -z "$missing" ] && [ -z "$stale" ]; then
  echo "kubeadm-config already lists the etcd endpoints $ETCD_ENDPOINTS"
  exit 0
fi
kubeadm init phase upload-config kubeadm --config "$KUBEADM_CONFIG"
echo "kubeadm-config uploaded: etcd endpoints $ETCD_ENDPOINTS"
