"""Runs scim2-tester's full compliance check against a SCIM server.

usage: check_server.py BASE_URL TOKEN [ALLOWED_EXCEPTIONS_JSON]

Prints one line per non-SUCCESS check, then a result line
`scim2-tester: N checks, S SUCCESS, K SKIPPED, E other` and exits 0 when every
check is SUCCESS or a listed exception (a JSON list of [title, status] pairs the
caller justifies), 1 otherwise. Talks to loopback only; installs nothing.
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    allowed = {tuple(x) for x in json.loads(sys.argv[3])} if len(sys.argv) > 3 else set()
    http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    client = SyncSCIMClient(http)
    results = check_server(client)
    counts = {}
    bad = 0
    for r in results:
        counts[r.status.name] = counts.get(r.status.name, 0) + 1
        if r.status == Status.SUCCESS:
            continue
        ok = (r.title, r.status.name) in allowed
        bad += 0 if ok else 1
        tag = "allowed" if ok else "FAIL"
        print(f"{tag}: {r.status.name} {r.resource_type or '-'} {r.title}: {r.reason}")
        if not ok and r.data is not None:
            print(f"    data: {str(r.data)[:600]}")
    others = sum(v for k, v in counts.items() if k not in ("SUCCESS", "SKIPPED"))
    print(
        f"scim2-tester: {len(results)} checks, {counts.get('SUCCESS', 0)} SUCCESS, "
        f"{counts.get('SKIPPED', 0)} SKIPPED, {others} other; {bad} not allowed"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
