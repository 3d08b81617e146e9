"""A DNS query for an A record, sent from a lab host (which has python3 and
no DNS tools): `python3 - SERVER NAME` prints the address of every A record
in the answer, in order, one per line (all sections: CoreDNS's whoami
plugin puts the asker's address in the additional one)."""
import socket, struct, sys
def name(buf, i):
    """The index after a (possibly compressed) name at i."""
    while True:
        n = buf[i]
        if n == 0: return i + 1
        if n & 0xC0 == 0xC0: return i + 2
        i += n + 1
q = struct.pack(">HHHHHH", 0x4b1d, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[2].split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, (sys.argv[1], 53)); r = s.recv(4096)
_, _, qd, an, ns, ar = struct.unpack(">HHHHHH", r[:12]); i = 12
for _ in range(qd): i = name(r, i) + 4
for _ in range(an + ns + ar):
    i = name(r, i); t, c, ttl, ln = struct.unpack(">HHIH", r[i:i + 10]); i += 10
    if t == 1: print(socket.inet_ntoa(r[i:i + 4]))
    i += ln
