# The VIP answers: some load balancer holds it and HAProxy listens on it.
for ((i = 1; i <= 30; i++)); do
  if timeout 2 bash -c "exec 3<>/dev/tcp/$VIP/$API_PORT" 2>/dev/null; then
    echo "$VIP:$API_PORT accepts connections"
    exit 0
  fi
  sleep 1
done
echo "nothing accepts connections on $VIP:$API_PORT after 30 s" >&2
exit 1
