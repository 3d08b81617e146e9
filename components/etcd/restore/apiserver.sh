# Restore: the kube-apiserver static pod out of the way ($ACTION=stop) while
# etcd is restored, and back ($ACTION=start); kubelet follows the manifest.
manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
parked=/etc/kubernetes/hakube/kube-apiserver.yaml.restore
install -d -m 0700 /etc/kubernetes/hakube
if [ "$ACTION" = stop ] && [ -e "$manifest" ]; then
  mv "$manifest" "$parked"
  echo "kube-apiserver stopped on $(hostname)"
elif [ "$ACTION" = start ] && [ -e "$parked" ]; then
  mv "$parked" "$manifest"
  echo "kube-apiserver back on $(hostname)"
else
  echo "kube-apiserver: nothing to $ACTION on $(hostname)"
fi
