"""Where fleet config push lives in the bucket, for both its sides: the gateways' fleet thread
(agent/service/fleet.py) and the operator's commands (agent/fleet_operator.py).

    {prefix}fleet/groups/{group}.toml      + .sig    what every gateway of the group runs
    {prefix}fleet/devices/{device_id}.toml + .sig    one gateway's overrides (win over group)
    {prefix}fleet/status/{device_id}.json            each gateway's report

It is the bucket the fleet already uploads its clips to, reached with the same client.
"""

from __future__ import annotations

from typing import Any

from agent import layout
from agent.config import CloudSettings, Config, ConfigError

MAX_REPORT_BYTES = 64 * 1024


def doc_key(cloud: CloudSettings, target: str) -> str:
    kind, name = target.split(":", 1)
    return f"{cloud.prefix}fleet/{kind}s/{name}.toml"


def reports_prefix(cloud: CloudSettings) -> str:
    return f"{cloud.prefix}fleet/status/"


def report_key(cloud: CloudSettings, device_id: str) -> str:
    return f"{reports_prefix(cloud)}{device_id}.json"


def oss_client(config: Config) -> Any:
    from agent.deliver.credentials import CredentialSource
    from agent.deliver.oss import OssUploader

    cloud = config.cloud
    if cloud is None:
        raise ConfigError(
            f"{config.source}: no [cloud] section (fleet documents live in its bucket)"
        )
    return OssUploader(
        endpoint=cloud.oss_endpoint,
        region=cloud.region,
        bucket=cloud.bucket,
        credentials=CredentialSource(),
        checkpoint_dir=layout.checkpoint_dir(config.agent.data_dir),
        read_timeout=30.0,
    )
