"""One router per resource: users, items, events, erasures, model, health, metrics.

Importing :mod:`recforge.serving.ids` registers the ``{...:id}`` path convertor the routes use.
"""

import recforge.serving.ids  # noqa: F401 - registers the id convertor
