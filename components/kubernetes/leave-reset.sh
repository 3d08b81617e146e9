# This node leaves the stack (the delete of its reset step, after its drain
# and before its VM goes): `kubeadm reset` stops the kubelet (which would
# otherwise register the node again once it is deleted from the API), removes
# its containers and what kubeadm wrote; the CNI's config goes too.
if [ ! -e /etc/kubernetes/kubelet.conf ] && [ -z "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ]; then
  echo "$(hostname) never joined: nothing to reset"
  exit 0
fi
kubeadm_reset || {
  echo "kubeadm reset failed on $(hostname); the end of its log:" >&2
  tail -n 20 /var/log/hakube/kubeadm-reset.log >&2
  exit 1
}
systemctl disable --now --quiet kubelet 2>/dev/null || true
rm -rf /etc/cni/net.d
echo "$(hostname): kubeadm reset, kubelet stopped"
