"""What DNS should hold for a domain: `records.domain_records` fed from the store and the other
parts that own a value (the DKIM keys, the MTA-STS policy's id)."""

from __future__ import annotations

from mailfort.config import Config
from mailfort.ops.records import DkimPublished, Note, Record, domain_records
from mailfort.store.api import Store
from mailfort.store.records import DkimState
from mailfort.store.roles import DkimKeys
from mailfort.wellknown import mta_sts


async def dkim_published(store: DkimKeys, domain: str) -> list[DkimPublished]:
    """Every key of `domain` that DNS must show: waiting to be used, signing, or retiring (kept
    so that mail signed before a rotation still verifies); a retired key may leave DNS."""
    return [
        DkimPublished(selector=key.selector, state=key.state.value, txt=key.txt_record)
        for key in await store.dkim_keys(domain)
        if key.state is not DkimState.RETIRED
    ]


def policy_id(config: Config, domain: str) -> str:
    """The `id=` of the domain's MTA-STS policy as the node serves it."""
    del domain  # one policy for every domain of the node, as the http listener serves it
    return mta_sts.policy_id(config)


async def expected_records(
    config: Config, store: Store, domain: str
) -> tuple[list[Record], list[Note]]:
    keys = await dkim_published(store, domain)
    return domain_records(config, domain, keys, policy_id(config, domain))
