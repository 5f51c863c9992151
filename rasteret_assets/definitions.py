"""The code location's ``Definitions``; assets, resources and automation join as they land."""

import dagster as dg

defs = dg.Definitions()
