# Install binaries ($ETCD_BINS) of a pinned etcd release into /usr/local/bin,
# verified by sha256 before anything is installed; skipped when every one of
# them is already that exact version.
bin_version() {  # "etcd --version" / "etcdctl version" / "etcdutl version" -> X.Y.Z
  [ -x "/usr/local/bin/$1" ] || return 0
  local arg=version
  [ "$1" = etcd ] && arg=--version
  # awk reads to the end: exiting early could SIGPIPE the binary and fail
  # this step under pipefail. Both found by the lab's second run.
  { "/usr/local/bin/$1" "$arg" 2>/dev/null || true; } |
    awk 'tolower($0) ~ /^etcd(ctl|utl)? version:/ && !n++ { print $3 }'
}
current="" stale=""
for bin in $ETCD_BINS; do
  v=$(bin_version "$bin")
  [ "$v" = "$ETCD_VERSION" ] || stale="$stale $bin"
  [ -n "$v" ] && current="$current $bin=$v"
done
if [ -z "$stale" ]; then
  echo "etcd $ETCD_VERSION already installed ($ETCD_BINS)"
  exit 0
fi
# etcd's upgrade policy, checked against the running cluster before anything
# is fetched: patch releases freely, one minor at a time, never down (the
# cluster version, not a member's binary, decides), and the patch level the
# next minor's upgrade guide requires.
check_upgrade() {
  [[ " $ETCD_BINS " == *" etcd "* ]] && systemctl is-active --quiet etcd || return 0
  # etcd.py asks again (status 3) while the cluster version lags the members
  # (3.0.0 right after a bootstrap); at the deadline it judges by what etcd
  # will decide, or refuses when it cannot tell.
  local body status said rc final="" asked=0 deadline=$((SECONDS + ${UPGRADE_WAIT_SECONDS:-30}))
  while :; do
    body=$(curl -sf --max-time 5 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/healthcheck-client.crt" \
           --key "$PKI_DIR/healthcheck-client.key" https://127.0.0.1:2379/version || true)
    status=$(ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc endpoint status -w json 2>/dev/null || true)
    [ "$SECONDS" -lt "$deadline" ] || final=--final
    rc=0
    said=$(etcd_decide upgrade --target "$ETCD_VERSION" --version-body "$body" --host "$(hostname)" \
      --members "$(tr ',' '\n' <<<"$ETCD_ENDPOINTS" | grep -c .)" --floors "$ETCD_UPGRADE_FLOORS" \
      $final <<<"$status") || rc=$?
    [ "$rc" = 3 ] || break
    [ $((asked++)) -gt 0 ] || echo "$said"
    sleep "${POLL_SECONDS:-1}"
  done
  [ -z "$said" ] || echo "$said"
  [ "$rc" = 0 ] || exit 1
}
# $ETCD_UPGRADE_FLOORS ("5=32 6=11"): the patch level each minor must reach
# before the next (config/versions.py ETCD_LINES, each with its source).
check_upgrade
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
url="$ETCD_BASE_URL/v$ETCD_VERSION/$ETCD_TARBALL"
fetch() { curl -fsSL --retry 5 --retry-delay 2 --connect-timeout 15 -o "$1" "$2"; }
fetch "$work/$ETCD_TARBALL" "$url" || { echo "download failed: $url" >&2; exit 1; }
if [ -n "$ETCD_SHA256" ]; then
  expected=$ETCD_SHA256 origin="hakube:etcd.sha256"
else
  sums="$ETCD_BASE_URL/v$ETCD_VERSION/SHA256SUMS"
  fetch "$work/SHA256SUMS" "$sums" || { echo "download failed: $sums" >&2; exit 1; }
  expected=$(awk -v f="$ETCD_TARBALL" '$2 == f || $2 == "*" f || $2 == "./" f { print $1 }' "$work/SHA256SUMS")
  origin=$sums
  echo "note: hakube pins no checksum for etcd $ETCD_VERSION; verifying against $sums, fetched from" \
       "the same host as the tarball. Pin one with hakube:etcd.sha256 to trust nothing fetched at run time."
  [ -n "$expected" ] || { echo "$sums lists no checksum for $ETCD_TARBALL" >&2; exit 1; }
fi
actual=$(sha256sum "$work/$ETCD_TARBALL" | awk '{ print $1 }')
if [ "$actual" != "$expected" ]; then
  echo "checksum mismatch for $url: expected $expected (from $origin), got $actual; nothing installed" >&2
  exit 1
fi
tar -xzf "$work/$ETCD_TARBALL" -C "$work" --strip-components=1 --no-same-owner
for bin in $ETCD_BINS; do
  [ -f "$work/$bin" ] || { echo "$ETCD_TARBALL has no $bin" >&2; exit 1; }
  install -m 0755 "$work/$bin" "/usr/local/bin/$bin.hakube-new"
done
# Swap all binaries only once every one of them is in place.
for bin in $ETCD_BINS; do mv -f "/usr/local/bin/$bin.hakube-new" "/usr/local/bin/$bin"; done
echo "installed etcd $ETCD_VERSION: $ETCD_BINS (was:${current:- none})"
