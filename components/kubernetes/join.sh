# kubeadm join with the JoinConfiguration on stdin (it holds the bootstrap
# token: root-only, removed afterwards). A node with a kubelet.conf has joined
# and is left alone; a half-done join is reset first, keeping $KEEP_FILES
# (the etcd client certs, a control plane's shared certs: hakube's steps put
# them there, and they are checked before kubeadm runs).
umask 077
if [ -s /etc/kubernetes/kubelet.conf ]; then
  cat >/dev/null
  echo "$(hostname) already joined"
  exit 0
fi
install -d -m 0700 /etc/kubernetes/hakube /var/log/hakube
cfg=/etc/kubernetes/hakube/join.yaml
log=/var/log/hakube/kubeadm-join.log
trap 'rm -f "$cfg"' EXIT
cat >"$cfg"
if [ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ] || [ -s /etc/kubernetes/bootstrap-kubelet.conf ]; then
  # shellcheck disable=SC2086 # a list of paths
  kubeadm_reset_keeping $KEEP_FILES
  echo "a previous kubeadm join did not finish: reset, hakube's certificates kept"
fi
for path in $KEEP_FILES; do
  [ -s "$path" ] || { echo "$path is missing: its step did not run on $(hostname)" >&2; exit 1; }
done
cgroup_args=$(kubeadm_cgroup_args) || exit 1
# shellcheck disable=SC2086 # none or one flag
if ! kubeadm join --config "$cfg" $cgroup_args >"$log" 2>&1; then
  echo "kubeadm join failed on $(hostname); the end of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
if [ "$CONTROL_PLANE" = 1 ]; then
  home=$(getent passwd "$ADMIN_USER" | cut -d: -f6)
  install -d -m 0700 -o "$ADMIN_USER" -g "$ADMIN_USER" "$home/.kube"
  install -m 0600 -o "$ADMIN_USER" -g "$ADMIN_USER" /etc/kubernetes/admin.conf "$home/.kube/config"
fi
echo "$(hostname) joined"
