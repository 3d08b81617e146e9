# $NODE leaves the stack (the delete of its forget step, on the first control
# plane, after the node was drained and reset): its Node object is deleted
# from the API, so nothing lists it once its VM is gone.
export KUBECONFIG=/etc/kubernetes/admin.conf
k() { kubectl --server "https://$API_ADDRESS:$API_PORT" --request-timeout=20s "$@"; }
k delete node "$NODE" --ignore-not-found
echo "$NODE deleted from the API"
