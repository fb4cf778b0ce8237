"""A resource kind from outside storeflow: what a plugin writes, and nothing else.

Its spec and its record here (no Prefect); its operations and flows in widget_flows.py.
A widget is a file under the storage root holding its colour.
"""

from typing import Literal

from storeflow.models.names import ResourceName
from storeflow.models.schemas import Spec
from storeflow.tasks.kinds import ResourceKind


class WidgetSpec(Spec):
    name: ResourceName
    colour: Literal["red", "green", "blue"] = "red"


class WidgetUpdate(Spec):
    colour: Literal["red", "green", "blue"]


WIDGET = ResourceKind(
    name="widget",
    help="Widgets: a file holding a colour (a plugin's kind, for the tests).",
    spec=WidgetSpec,
    changes=WidgetUpdate,
    operations="tests.kinds.widget_flows",
    flows="tests.kinds.widget_flows",
    columns=("colour", "message"),
)
