"""edmem: an encoder-decoder transformer with an entity memory (EDMem, Zhang et al., EMNLP 2022).

Data flows one way: files -> examples -> tensors -> model -> top-k ids -> predictions.json -> metrics.
Import submodules directly (``edmem.evaluation`` needs neither torch nor transformers).
"""

__version__ = "0.1.0"
