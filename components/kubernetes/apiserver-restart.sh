# Rolling restart of this control plane's kube-apiserver, one at a time, when
# its etcd client (RESTART_PAYLOAD: digest of the etcd CA, client cert and
# --etcd-servers) changed since it was last restarted for it:
# - the etcd membership changed: --etcd-servers in its static manifest is
#   rewritten and kubelet re-creates the pod from it;
# - its etcd client cert changed (it reads the files at start): the container
#   is stopped and kubelet starts it again.
# Either way, wait until a kube-apiserver with the wanted --etcd-servers is
# ready. Runs on create and on every update of its step; a fresh apiserver
# (started after its cert, with the wanted servers) is left alone.
export CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock
marker=/var/lib/hakube/apiserver-restart.payload
manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
want="--etcd-servers=$ETCD_ENDPOINTS"
record() { install -d -m 0755 "$(dirname "$marker")"; printf '%s\n' "$RESTART_PAYLOAD" >"$marker"; }
if [ "$(cat "$marker" 2>/dev/null)" = "$RESTART_PAYLOAD" ]; then
  echo "kube-apiserver on $(hostname) already runs with this etcd client"
  exit 0
fi
pid=$(pgrep -o -f -- "kube-apiserver .*$want( |\$)" || true)
if [ ! -e "$marker" ] && [ -n "$pid" ] && grep -qE -- "^ *- $want\$" "$manifest"; then
  started=$(( $(date +%s) - $(ps -o etimes= -p "$pid" | tr -d ' ') ))
  if [ "$started" -ge "$(stat -c %Y "$ETCD_CERT")" ]; then
    record
    echo "kube-apiserver on $(hostname) started after its etcd client cert: nothing to restart"
    exit 0
  fi
fi
if ! grep -qE -- "^ *- $want\$" "$manifest"; then
  grep -qE -- '^ *- --etcd-servers=' "$manifest" || { echo "$manifest has no --etcd-servers" >&2; exit 1; }
  sed -E "s|^( *- )--etcd-servers=.*\$|\\1$want|" "$manifest" > /etc/kubernetes/kube-apiserver.yaml.hakube-new
  # kubelet watches the manifests dir: replace the file in one rename, from outside it
  mv -f /etc/kubernetes/kube-apiserver.yaml.hakube-new "$manifest"
  echo "kube-apiserver on $(hostname): $want"
else
  ids=$(crictl ps --name kube-apiserver -q)
  # shellcheck disable=SC2086 # one id per word
  [ -n "$ids" ] && crictl stop $ids >/dev/null
fi
for ((i = 1; i <= 90; i++)); do
  sleep 2
  if pgrep -f -- "kube-apiserver .*$want( |\$)" >/dev/null &&
     [ "$(curl -sk --max-time 2 https://127.0.0.1:6443/readyz)" = ok ]; then
    record
    echo "kube-apiserver on $(hostname) restarted and ready"
    exit 0
  fi
done
echo "kube-apiserver on $(hostname) not ready 180 s after its restart (want $want)" >&2
exit 1
