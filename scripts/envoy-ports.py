"""An Envoy bootstrap of deploy/envoy/ with every port moved to a free loopback port and
rls's (8081) to the one given, for scripts/bench-envoy.sh; prints the listener's port.

    python3 scripts/envoy-ports.py BOOTSTRAP RLS_PORT OUT

BOOTSTRAP is a file name of deploy/envoy/ without `.yaml`, or `none`: rlqs.yaml without
its rate limit filter (Envoy with no limit).
"""
import re
import socket
import sys


def free():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return str(s.getsockname()[1])


bootstrap, rls, out = sys.argv[1:]
if bootstrap == "none":
    text = open("deploy/envoy/rlqs.yaml").read()
    start = text.index("                  - name: envoy.filters.http.rate_limit_quota")
    end = text.index("                  - name: envoy.filters.http.router")
    text = text[:start] + text[end:]
else:
    text = open(f"deploy/envoy/{bootstrap}.yaml").read()
ports = {"8081": rls}
text = re.sub(
    r"(port_value: )(\d+)",
    lambda m: m.group(1) + ports.setdefault(m.group(2), free()),
    text,
)
open(out, "w").write(text)
print(ports["10000"])
