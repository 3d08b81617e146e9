# The etcd preflight gate: every external endpoint answers `endpoint health`
# with exactly the files kubeadm will use. On failure, say which endpoint and
# why (the seed's troubleshooting problem 2).
for f in "$ETCD_CA" "$ETCD_CERT" "$ETCD_KEY"; do
  [ -s "$f" ] || { echo "etcd preflight on $(hostname): $f is missing" >&2; exit 1; }
done
failed=0
for ep in ${ETCD_ENDPOINTS//,/ }; do
  hostport=${ep#https://}
  host=${hostport%:*} port=${hostport##*:}
  if out=$(ETCDCTL_API=3 etcdctl --endpoints="$ep" --cacert="$ETCD_CA" --cert="$ETCD_CERT" \
        --key="$ETCD_KEY" --dial-timeout=3s --command-timeout=5s endpoint health 2>&1); then
    echo "ok   $ep"
    continue
  fi
  failed=1
  if ! timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
    why="no TCP connection to $host:$port (etcd stopped, or a firewall drops this host)"
  elif grep -qiE 'certificate|x509|tls|handshake' <<<"$out"; then
    why="TLS refused: the client cert/CA do not match this member's"
  else
    why="connected, but the member is not healthy"
  fi
  echo "FAIL $ep from $(hostname): $why" >&2
  echo "     etcdctl: $(tr '\n' ' ' <<<"$out" | cut -c1-400)" >&2
done
[ "$failed" = 0 ] && echo "etcd preflight on $(hostname): every endpoint healthy with $ETCD_CERT"
exit "$failed"
