# containerd from the distribution, with the systemd cgroup driver kubelet is
# configured for; restarted only when its config changes.
export DEBIAN_FRONTEND=noninteractive
if ! command -v containerd >/dev/null; then
  apt-get update -q
  apt-get install -y -q containerd
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
containerd config default >"$work/config.toml"
sed -i -E 's/^([[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*)false/\1true/' "$work/config.toml"
grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' "$work/config.toml" || {
  echo "containerd's default config has no SystemdCgroup switch to turn on; containerd $(containerd --version)" >&2
  exit 1
}
# Pod sandboxes run the pause image kubeadm names for this Kubernetes minor
# (containerd's own default is older, and kubeadm warns about the mismatch):
# sandbox_image in containerd 1.x's config, pinned_images.sandbox in 2.x's.
sed -i -E "s|^([[:space:]]*sandbox_image[[:space:]]*=[[:space:]]*).*|\1\"$PAUSE_IMAGE\"|; s|^([[:space:]]*sandbox[[:space:]]*=[[:space:]]*).*|\1'$PAUSE_IMAGE'|" "$work/config.toml"
grep -Fq -e "\"$PAUSE_IMAGE\"" -e "'$PAUSE_IMAGE'" "$work/config.toml" || {
  echo "containerd's default config names no sandbox image to set to $PAUSE_IMAGE; containerd $(containerd --version)" >&2
  exit 1
}
put_file "$work/config.toml" /etc/containerd/config.toml 0644 root:root
printf 'runtime-endpoint: %s\nimage-endpoint: %s\n' "$CRI_SOCKET" "$CRI_SOCKET" >"$work/crictl.yaml"
restart=$CHANGED
put_file "$work/crictl.yaml" /etc/crictl.yaml 0644 root:root
systemctl is-enabled --quiet containerd || systemctl enable --quiet containerd
if [ "$restart" = 1 ] || ! systemctl is-active --quiet containerd; then
  systemctl restart containerd
  echo "containerd (re)started"
fi
for ((i = 1; i <= 30; i++)); do
  [ -S "${CRI_SOCKET#unix://}" ] && { echo "containerd ready: $(containerd --version)"; exit 0; }
  sleep 1
done
echo "containerd socket ${CRI_SOCKET#unix://} did not appear" >&2
journalctl -u containerd -n 30 --no-pager -o cat >&2 || true
exit 1
