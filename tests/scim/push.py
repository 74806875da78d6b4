"""An IdP pushing people to usher's inbound SCIM server, with the real scim2-client.

usage:
  push.py BASE TOKEN create             -> prints {"ann": id, "bob": id, "eng": id, "sales": id}
  push.py BASE TOKEN leave GROUP USER   -> PATCH remove the member USER from GROUP
  push.py BASE TOKEN deactivate USER    -> PATCH replace active = false
  push.py BASE TOKEN delete USER        -> DELETE the user
  push.py BASE TOKEN show USER          -> prints the user as usher serves it

Every step goes through scim2-client (discovery first, so the client validates
what usher answers against the schemas usher publishes). Loopback only.
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import PatchOp, PatchOperation


def main() -> int:
    base, token, step = sys.argv[1], sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    client = SyncSCIMClient(http)
    client.discover()
    User = client.get_resource_model("User")
    Group = client.get_resource_model("Group")

    def person(user_name, external_id, given, family):
        return User(
            user_name=user_name,
            external_id=external_id,
            name={"given_name": given, "family_name": family},
            display_name=f"{given} {family}",
            emails=[{"value": user_name, "primary": True, "type": "work"}],
            active=True,
        )

    if step == "create":
        ann = client.create(person("ann@example.com", "00u-ann", "Ann", "Lee"))
        bob = client.create(person("bob@example.com", "00u-bob", "Bob", "Stone"))
        # Found again by filter, as Okta does before it creates.
        found = client.query(User, query_parameters={"filter": 'userName eq "ANN@example.com"'})
        assert [r.id for r in found.resources] == [ann.id], found
        eng = client.create(
            Group(
                display_name="Engineering",
                members=[{"value": ann.id}, {"value": bob.id}],
            )
        )
        sales = client.create(Group(display_name="Sales", members=[{"value": bob.id}]))
        print(json.dumps({"ann": ann.id, "bob": bob.id, "eng": eng.id, "sales": sales.id}))
    elif step == "leave":
        group, user = args
        op = PatchOp[Group](
            operations=[PatchOperation(op=PatchOperation.Op.remove, path=f'members[value eq "{user}"]')]
        )
        client.modify(Group, group, op)
        print("{}")
    elif step == "deactivate":
        (user,) = args
        op = PatchOp[User](
            operations=[PatchOperation(op=PatchOperation.Op.replace_, path="active", value=False)]
        )
        client.modify(User, user, op)
        print("{}")
    elif step == "delete":
        (user,) = args
        client.delete(User, user)
        print("{}")
    elif step == "show":
        (user,) = args
        print(client.query(User, user).model_dump_json(by_alias=True, exclude_none=True))
    else:
        print(f"unknown step {step}", file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main())
