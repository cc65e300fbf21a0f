#!/bin/sh
# The demo's router. The client connects to this container's port $PORT; nftables
# forwards the connection to $SERVER (DNAT, and masquerade so that the replies come
# back this way) and drops every ${DROP_EVERY}th request segment it forwards, in the
# forward hook: the kernel frees it with the drop reason NETFILTER_DROP, the client's TCP
# sends it again about 200 ms later (a segment the count includes, so with 4 one request
# in 3 loses its first copy), and pktspan puts both under that request's exchange in
# the client's trace. It needs NET_ADMIN and net.ipv4.ip_forward=1 (docker-compose.yaml).
set -eu

server_name=${SERVER:-server}
port=${PORT:-8080}
drop_every=${DROP_EVERY:-4}

# The server may still be starting: Docker's DNS knows it once its container exists.
tries=0
until server=$(getent ahostsv4 "$server_name") && [ -n "$server" ]; do
	tries=$((tries + 1))
	if [ "$tries" -ge 60 ]; then
		echo "router: cannot resolve $server_name" >&2
		exit 1
	fi
	sleep 1
done
# getent prints "ADDRESS STREAM NAME" lines: the first word is the address.
set -- $server
server=$1

# "tcp flags & psh == psh" picks the segments carrying a request (the client writes each
# request at once) and leaves the handshake and the bare ACKs alone; numgen counts only
# the packets that got that far, so the drops are every ${drop_every}th request segment,
# the first one included, retransmissions counted.
nft -f - <<NFT
table ip pktspan_demo {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport $port dnat to $server:$port
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr $server tcp dport $port masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip daddr $server tcp dport $port tcp flags & psh == psh numgen inc mod $drop_every == 0 counter drop
	}
}
NFT
echo "router: port $port -> $server_name ($server):$port, dropping every ${drop_every}th request segment"

# Until Docker stops the container: sleep in the background so the TERM trap runs at once.
trap 'exit 0' TERM INT
while :; do
	sleep 3600 &
	wait $! || true
done
