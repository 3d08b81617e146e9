# Rolling restart of this control plane's kube-apiserver, one at a time:
# - the etcd membership changed: --etcd-servers in its static manifest is
#   rewritten and kubelet re-creates the pod from it;
# - its etcd client cert changed (it reads the files at start): the container
#   is stopped and kubelet starts it again.
# Either way, wait until a kube-apiserver with the wanted --etcd-servers is ready.
export CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock
manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
want="--etcd-servers=$ETCD_ENDPOINTS"
if ! grep -qE -- "^ *- $want\$" "$manifest"; then
  grep -qE -- '^ *- --etcd-servers=' "$manifest" || { echo "$manifest has no --etcd-servers" >&2; exit 1; }
  sed -E "s|^( *- )--etcd-servers=.*\$|\\1$want|" "$manifest" > /etc/kubernetes/kube-apiserver.yaml.hakube-new
  # kubelet watches the manifests dir: replace the file in one rename, from outside it
  mv -f /etc/kubernetes/kube-apiserver.yaml.hakube-new "$manifest"
  echo "kube-apiserver on $(hostname): $want"
else
  ids=$(crictl ps --name kube-apiserver -q)
  [ -n "$ids" ] && crictl stop $ids >/dev/null
fi
for ((i = 1; i <= 90; i++)); do
  sleep 2
  if pgrep -f -- "kube-apiserver .*$want( |\$)" >/dev/null &&
     [ "$(curl -sk --max-time 2 https://127.0.0.1:6443/readyz)" = ok ]; then
    echo "kube-apiserver on $(hostname) restarted and ready"
    exit 0
  fi
done
echo "kube-apiserver on $(hostname) not ready 180 s after its restart (want $want)" >&2
exit 1
