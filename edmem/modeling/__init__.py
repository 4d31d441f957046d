"""The EDMem model: lower/upper encoder-decoder blocks, entity memory, checkpoints.

Importing this package registers ``EDMemConfig``/``EDMemModel`` with ``AutoConfig``/``AutoModel``.
"""

from edmem.config import EDMemConfig
from edmem.modeling.model import EDMemModel
from edmem.modeling.outputs import DetailLoss, EDMemOutput

__all__ = ["EDMemConfig", "EDMemModel", "DetailLoss", "EDMemOutput"]
