"""Which destinations a process writes to, built from its settings."""

from __future__ import annotations

import logging
from dataclasses import fields

from spanlytics.config import Settings
from spanlytics.destinations import Destination

_logger = logging.getLogger("spanlytics.exporter")


def build_destinations(settings: Settings) -> list[Destination]:
    destinations: list[Destination] = []
    for name in settings.destinations:
        if name == "local":
            from spanlytics.destinations.local import LocalStore

            destinations.append(LocalStore(settings.local_path))
        elif name == "readme":
            if not settings.readme_api_key:
                _logger.warning("the readme destination needs SPANLYTICS_README_API_KEY; it is not used")
                continue
            from spanlytics.destinations.readme import ReadmeDestination, ReadmeOptions

            options = ReadmeOptions(
                development=settings.readme_development,
                allowed_hosts=settings.readme_allowed_hosts,
                anonymous_group=settings.readme_log_anonymous,
                trust_forwarded=settings.trust_forwarded_headers,
            )
            destinations.append(
                ReadmeDestination(
                    settings.readme_api_key,
                    settings.sender_settings(settings.readme_base_url),
                    options,
                    min(settings.delivery_batch_records, 100),
                    settings.delivery_batch_bytes,
                )
            )
        elif name == "http":
            if not settings.http_url:
                _logger.warning("the http destination needs SPANLYTICS_HTTP_URL; it is not used")
                continue
            from spanlytics.destinations.http import HttpDestination, JsonRecordsEncoder

            destinations.append(
                HttpDestination(
                    settings.sender_settings(
                        settings.http_url, settings.http_header_pairs(), settings.http_gzip
                    ),
                    JsonRecordsEncoder(settings.delivery_batch_records, settings.delivery_batch_bytes),
                )
            )
        elif name == "apitally":
            if not settings.apitally_client_id:
                _logger.warning("the apitally destination needs SPANLYTICS_APITALLY_CLIENT_ID; not used")
                continue
            from spanlytics.destinations.apitally import ApitallyDestination, ApitallyOptions

            # ApitallyOptions' fields are the apitally_* settings without their prefix
            apitally_options = ApitallyOptions(
                trust_forwarded=settings.trust_forwarded_headers,
                **{
                    f.name: getattr(settings, f"apitally_{f.name}")
                    for f in fields(ApitallyOptions)
                    if f.name != "trust_forwarded"
                },
            )
            destinations.append(
                ApitallyDestination(
                    settings.apitally_client_id,
                    settings.apitally_env,
                    settings.sender_settings(settings.apitally_base_url),
                    apitally_options,
                )
            )
    return destinations
