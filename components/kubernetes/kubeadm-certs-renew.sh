# hakube-kubeadm-certs-renew: kubeadm's certificates on this control plane
# renewed before they expire (kubespray's auto-renewal, with a threshold),
# run by its timer (hakube:kubernetes.certRenewal.calendar). When one of them
# (the PKI leaves and the client certificates inside admin.conf,
# controller-manager.conf, scheduler.conf, super-admin.conf) expires within
# $RENEW_DAYS days: `kubeadm certs renew all` (with an external etcd kubeadm
# leaves the apiserver's etcd client certificate alone: it is hakube's), then
# this node's control-plane containers restarted one after another so they
# read the new files (kubeadm does not reload them), each running again
# before the next. One control plane at a time: each starts $DELAY_SECONDS
# after the timer fires (10 minutes per place in the list), and restarts
# nothing while another control plane's apiserver ($PEERS) is not ready.
export CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock
pki=${PKI_DIR:-/etc/kubernetes/pki}
conf=${KUBE_DIR:-/etc/kubernetes}
limit=$((RENEW_DAYS * 86400))
due=""
for file in "$pki/apiserver.crt" "$pki/apiserver-kubelet-client.crt" "$pki/front-proxy-client.crt"; do
  [ -f "$file" ] || continue
  openssl x509 -noout -checkend "$limit" -in "$file" >/dev/null || due="$due $file"
done
for kc in admin.conf controller-manager.conf scheduler.conf super-admin.conf; do
  [ -f "$conf/$kc" ] || continue
  data=$(sed -n 's/^ *client-certificate-data: *//p' "$conf/$kc" | head -n1)
  [ -n "$data" ] || continue
  base64 -d <<<"$data" | openssl x509 -noout -checkend "$limit" >/dev/null || due="$due $conf/$kc"
done
if [ -z "$due" ]; then
  echo "hakube: kubeadm's certificates on $(hostname) are valid for more than $RENEW_DAYS days: nothing to renew"
  exit 0
fi
echo "hakube: expiring within $RENEW_DAYS days on $(hostname):$due"
sleep "$DELAY_SECONDS"
peers_ready() {
  local ip
  for ip in $PEERS; do
    [ "$(curl -sk --max-time 5 "https://$ip:$API_PORT/readyz")" = ok ] || { echo "$ip"; return 1; }
  done
}
for ((i = 1; i <= 60; i++)); do
  if down=$(peers_ready); then break; fi
  echo "hakube: the apiserver on $down is not ready: waiting before restarting anything here"
  sleep "${POLL_SECONDS:-10}"
done
peers_ready >/dev/null || { echo "hakube: another control plane stayed not ready; nothing renewed, the next run tries again" >&2; exit 1; }
kubeadm certs renew all
for component in kube-apiserver kube-controller-manager kube-scheduler; do
  old=$(crictl ps --name "^$component\$" -q)
  # shellcheck disable=SC2086 # one id per word
  [ -z "$old" ] || crictl stop $old >/dev/null
  for ((i = 1; i <= 90; i++)); do
    new=$(crictl ps --name "^$component\$" --state running -q)
    [ -n "$new" ] && [ "$new" != "$old" ] && break
    sleep "${POLL_SECONDS:-2}"
  done
  if [ -z "$new" ] || [ "$new" = "$old" ]; then
    echo "hakube: $component did not come back on $(hostname)" >&2
    exit 1
  fi
  echo "hakube: $component restarted with its renewed certificates"
done
for ((i = 1; i <= 90; i++)); do
  [ "$(curl -sk --max-time 2 "https://127.0.0.1:$API_PORT/readyz")" = ok ] && break
  sleep "${POLL_SECONDS:-2}"
done
if [ -n "$ADMIN_USER" ]; then
  home=$(getent passwd "$ADMIN_USER" | cut -d: -f6)
  [ -d "$home/.kube" ] && install -m 0600 -o "$ADMIN_USER" -g "$ADMIN_USER" "$conf/admin.conf" "$home/.kube/config"
fi
echo "hakube: kubeadm's certificates on $(hostname) renewed"
