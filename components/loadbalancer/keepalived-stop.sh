# This load balancer leaves the stack (or the stack is destroyed): keepalived
# stops before the VM goes. A master sends a priority-0 advert on the way
# out, so the other load balancer takes the VIP at once, not after ~3 s.
if systemctl is-active --quiet keepalived; then
  systemctl stop keepalived
  echo "keepalived stopped on $(hostname)"
fi
systemctl disable --quiet keepalived 2>/dev/null || true
