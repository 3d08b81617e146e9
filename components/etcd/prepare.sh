# The etcd system user, a 0700 data dir it owns, and the config/PKI dirs.
if ! id -u etcd >/dev/null 2>&1; then
  useradd --system --home-dir "$ETCD_DATA_DIR" --no-create-home --shell /usr/sbin/nologin etcd
  echo "created user etcd"
fi
install -d -m 0700 -o etcd -g etcd "$ETCD_DATA_DIR"
install -d -m 0755 -o root -g root /etc/etcd
install -d -m 0750 -o root -g etcd "$PKI_DIR"
