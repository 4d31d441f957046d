"""Every constant more than one layer agrees on, defined once. Pure Python (the evaluation layer
imports it and must stay torch-free). Defaults of settings live in :mod:`edmem.config`
(the model) and in the flag tables (``edmem.training.args``, ``edmem.pretraining.args``)."""

from __future__ import annotations

#: Entity id (and memory row) meaning "no entity": padding of link tensors and ``ignore_index``
#: of every entity-linking loss.
NIL_ENTITY = 0
#: Label id the LM loss ignores (padding of ``labels``), PyTorch's default ``ignore_index``.
LABEL_IGNORE = -100

#: The mention markers the original adds to the BART tokenizer, in this order.
ENTITY_START_TOKEN = "<E_s>"
ENTITY_END_TOKEN = "<E_e>"
#: Number of tokens the original adds to the BART vocabulary (the two markers).
NUM_ADDED_TOKENS = 2
#: BART's padding token, as it appears in generated answer strings.
PAD_TOKEN = "<pad>"

#: ``--generate_target`` values of run_QA.py (edmem builds ``entity_linking``; the model config
#: also accepts ``pretraining``, LM + EL losses, see docs/model.md).
GENERATE_TARGETS = ("answer", "qa_pair", "entity_linking")
ENTITY_LINKING = "entity_linking"
PRETRAINING = "pretraining"

#: The parts of the loss the model reports beside the total (``DetailLoss`` fields, log order).
DETAIL_LOSS_NAMES = ("lm_loss", "el_loss", "encoder_elloss", "decoder_elloss", "final_elloss")

#: ``edmem memory add --init``: how a new entity row starts (docs/knowledge.md).
ROW_INIT_METHODS = ("name", "type_mean")
#: ``edmem memory edit --refit``: which linked entities' rows an edit re-fits without ``--rows``
#: (``none``: no row moves; the edit is carried by its fact overrides alone). The first is the
#: default, chosen on dev edits (docs/knowledge.md, "Settings").
EDIT_REFIT_CHOICES = ("subjects", "linked", "none")
