"""The platform's pipelines: one declaration each (docs/architecture.md, "Adding a pipeline")."""

from lakehouse.pipelines import activity, csv, market, orders
from lakehouse.registry import Registry

REGISTRY = Registry((market.PIPELINE, activity.PIPELINE, orders.PIPELINE, csv.PIPELINE))
