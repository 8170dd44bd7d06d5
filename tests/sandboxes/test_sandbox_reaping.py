"""Starting a sandbox while others come and go: a container removed between listing and inspecting is skipped."""

from __future__ import annotations

from harmony_agent.sandboxes.docker import OWNER_LABEL, SANDBOX_LABEL, docker_client, reap_orphans
from helpers.available import require


class _StaleListing:
    """The engine's real API, except that listing answers what it answered a moment ago (a race, made certain)."""

    def __init__(self, api, listing) -> None:
        self._api, self._listing = api, listing

    def containers(self, *args, **kwargs):
        return self._listing

    def __getattr__(self, name):
        return getattr(self._api, name)


class _Client:
    def __init__(self, client, api) -> None:
        from docker.models.containers import ContainerCollection

        self.api = api
        self.containers = ContainerCollection(client=self)


def test_a_container_gone_between_listing_and_inspecting_does_not_fail_the_next_start():
    require("docker")
    client = docker_client()
    container = client.containers.create(
        "harmony-agent/python:latest",
        ["sleep", "60"],
        network_mode="none",
        labels={SANDBOX_LABEL: "python", OWNER_LABEL: "nowhere:1:1"},
    )
    listing = client.api.containers(all=True, filters={"label": SANDBOX_LABEL})
    assert container.id in {entry["Id"] for entry in listing}
    container.remove(force=True)  # removed by its owner just after the listing
    stale = _Client(client, _StaleListing(client.api, listing))
    assert container.id not in reap_orphans(stale)  # skipped, not a 404 for the sandbox starting now
