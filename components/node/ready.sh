# Readiness gate: wait for cloud-init to finish on this node.
# Exit 0 = done; exit 2 = done with recoverable errors (cloud-init >= 23.4), which
# we accept but show; anything else fails the step with cloud-init's own report.
rc=0
cloud-init status --wait >/dev/null || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
  echo "cloud-init did not finish cleanly on $(hostname) (exit $rc):" >&2
  cloud-init status --long >&2 || true
  sudo -n tail -n 40 /var/log/cloud-init-output.log >&2 || true
  exit 1
fi
[ "$rc" -eq 2 ] && cloud-init status --long >&2
echo "$(hostname) ready: $(cloud-init status 2>/dev/null | tr -d '\n')"
