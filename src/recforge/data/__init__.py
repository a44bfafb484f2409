"""Events in: schema, readers, validation, the event store, vocabularies, ``Interactions``."""

from recforge.data.interactions import Interactions
from recforge.data.schema import EVENT_SCHEMA
from recforge.data.vocabulary import Vocabulary

__all__ = ["EVENT_SCHEMA", "Interactions", "Vocabulary"]
