# hakube-cert-check: every certificate on this node against its expiry, run
# by its timer (hakube:pki.check.calendar). One that expires within
# $CHECK_DAYS days fails the unit (journal, `systemctl --failed`), naming the
# file, its subject, the date and what to do: hakube's own ($HAKUBE_CERTS) are
# re-issued by a `pulumi up` of the stack inside pki.earlyRenewalHours of
# their expiry; kubeadm's ($KUBEADM_CERTS, when present) by `kubeadm certs
# renew`. Reads files only; needs openssl and date.
now=$(date +%s)
limit=$((CHECK_DAYS * 86400))
checked=0
expiring=0
check() {
  local file=$1 remedy=$2 end days left
  checked=$((checked + 1))
  if openssl x509 -noout -checkend "$limit" -in "$file" >/dev/null; then
    return 0
  fi
  end=$(openssl x509 -noout -enddate -in "$file" | cut -d= -f2)
  days=$((($(date -d "$end" +%s) - now) / 86400))
  if [ "$days" -eq 1 ]; then left="1 day"; else left="$days days"; fi
  echo "hakube: certificate $file ($(openssl x509 -noout -subject -nameopt RFC2253 -in "$file" |
    sed 's/^subject=//')) expires $end, in $left (the check warns $CHECK_DAYS days ahead): $remedy" >&2
  expiring=$((expiring + 1))
}
for file in $HAKUBE_CERTS; do
  if [ -f "$file" ]; then
    check "$file" "run \`pulumi up\` of stack $HAKUBE_STACK to re-issue it"
  fi
done
for file in $KUBEADM_CERTS; do
  [ -f "$file" ] || continue
  case " $HAKUBE_CERTS " in *" $file "*) continue ;; esac
  check "$file" "run \`kubeadm certs renew all\` on this control plane, then restart its static pods one node at a time"
done
if [ "$expiring" -gt 0 ]; then
  echo "hakube: $expiring of $checked certificates on $(hostname) expire within $CHECK_DAYS days" >&2
  exit 1
fi
echo "hakube: $checked certificates on $(hostname) valid for more than $CHECK_DAYS days"
