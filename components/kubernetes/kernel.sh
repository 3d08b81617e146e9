# Kernel prerequisites of kubeadm: overlay and br_netfilter loaded (now and at
# boot), bridged traffic seen by iptables, IP forwarding, swap off for good.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/modules" <<'M'
overlay
br_netfilter
M
put_file "$work/modules" /etc/modules-load.d/hakube-k8s.conf 0644 root:root
# A module built into the kernel has no /sys/module entry of its own and
# nothing for modprobe to load: each is judged present by what it provides.
loaded() {
  case "$1" in
    overlay) grep -qw overlay /proc/filesystems ;;
    br_netfilter) [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ;;
  esac
}
for m in overlay br_netfilter; do
  loaded "$m" || modprobe "$m" || { echo "cannot load kernel module $m" >&2; exit 1; }
done
cat >"$work/sysctl" <<'S'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
S
put_file "$work/sysctl" /etc/sysctl.d/90-hakube-k8s.conf 0644 root:root
sysctl -q -p /etc/sysctl.d/90-hakube-k8s.conf
if [ -n "$(swapon --noheadings --show=NAME 2>/dev/null)" ]; then
  swapoff -a
  echo "swap turned off"
fi
if grep -Eq '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab; then
  sed -i.hakube-bak -E 's|^([^#].*[[:space:]]swap[[:space:]].*)$|# hakube: kubelet needs swap off\n# \1|' /etc/fstab
  echo "swap entries commented out in /etc/fstab"
fi
echo "kernel ready: $(sysctl -n net.ipv4.ip_forward) forwarding, modules overlay br_netfilter"
