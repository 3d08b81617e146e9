# Rolling restart of this control plane's kube-apiserver after its etcd
# client cert changed (it reads the files at start): stop the container,
# kubelet starts it again from its static manifest; wait until it is ready.
export CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock
ids=$(crictl ps --name kube-apiserver -q)
[ -n "$ids" ] && crictl stop $ids >/dev/null
for ((i = 1; i <= 90; i++)); do
  sleep 2
  if [ "$(curl -sk --max-time 2 https://127.0.0.1:6443/readyz)" = ok ]; then
    echo "kube-apiserver on $(hostname) restarted with the new etcd client cert and ready"
    exit 0
  fi
done
echo "kube-apiserver on $(hostname) not ready 180 s after its restart" >&2
exit 1
