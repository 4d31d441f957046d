"""Change what the entity memory knows without retraining: ``edmem memory add / edit / remove``.

An application-level package above training and inference (docs/knowledge.md)::

    from edmem.knowledge import add_entities, edit_entities, remove_entities
    add_entities("model/", "new.jsonl", "passages.jsonl", "model-plus/")
"""

from edmem.knowledge.api import add_entities, edit_entities, remove_entities

__all__ = ["add_entities", "edit_entities", "remove_entities"]
