"""Fault campaigns (docs/campaigns.md): seeded fault schedules generated with hypothesis
strategies over a declared fault space, each run as a virtual-time ``hil run`` on a Dask
cluster; every failure confirmed by a second run and shrunk by hypothesis to a minimal
schedule, written as a scenario file that ``hil run`` replays bit for bit.

Each module has one job:

- ``spec``: the campaign file (TOML) and its errors, which name the file and the key;
- ``schedules``: the hypothesis strategy over the fault space, and the scenario text of a
  schedule (``toml_text`` writes it);
- ``worker``: one run, as a Dask task: ``hil run`` in a subprocess with a wall-clock budget;
- ``engine``: the campaign itself: futures and ``as_completed``, results stored as they
  arrive, confirmation, shrinking, the summary.
"""

from hil_rig.campaign.spec import (
    CampaignError,
    CampaignSpec,
    FaultSpace,
    load_campaign,
    parse_campaign,
)

__all__ = ["CampaignError", "CampaignSpec", "FaultSpace", "load_campaign", "parse_campaign"]
