# kubeadm init on the first control plane, once: a cluster that has an
# admin.conf is initialized and left alone. A half-done init (manifests but
# no admin.conf) is reset first (keeping $KEEP_FILES, the etcd client certs
# hakube put there), so the next `pulumi up` can finish the job. kubeadm's
# output carries a join token: it goes to a root-only log, not to Pulumi's.
export KUBECONFIG=/etc/kubernetes/admin.conf
if [ -s /etc/kubernetes/admin.conf ]; then
  echo "$(hostname): cluster already initialized"
  exit 0
fi
install -d -m 0700 /var/log/hakube
log=/var/log/hakube/kubeadm-init.log
if [ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ]; then
  echo "a previous kubeadm init did not finish: kubeadm reset first"
  # shellcheck disable=SC2086 # a list of paths
  kubeadm_reset_keeping $KEEP_FILES
fi
cgroup_args=$(kubeadm_cgroup_args) || exit 1
# shellcheck disable=SC2086 # none or one flag
if ! kubeadm init --config "$KUBEADM_CONFIG" $cgroup_args >"$log" 2>&1; then
  echo "kubeadm init failed on $(hostname); the end of $log:" >&2
  grep -v -E 'certificate-key|--token|discovery-token' "$log" | tail -n 40 >&2
  exit 1
fi
chmod 0600 "$log"
home=$(getent passwd "$ADMIN_USER" | cut -d: -f6)
install -d -m 0700 -o "$ADMIN_USER" -g "$ADMIN_USER" "$home/.kube"
install -m 0600 -o "$ADMIN_USER" -g "$ADMIN_USER" /etc/kubernetes/admin.conf "$home/.kube/config"
echo "$(hostname): kubeadm init done (external etcd: $ETCD_ENDPOINTS)"
