# $JOINER has joined: its bootstrap token ($TOKEN_ID) is deleted, so no
# credential to join this cluster outlives the join it was minted for.
export KUBECONFIG=/etc/kubernetes/admin.conf
if kubeadm token list 2>/dev/null | awk '{ print $1 }' | grep -q "^$TOKEN_ID\."; then
  kubeadm token delete "$TOKEN_ID" >/dev/null
  echo "bootstrap token $TOKEN_ID of $JOINER deleted"
else
  echo "no bootstrap token $TOKEN_ID left for $JOINER"
fi
