"""``python -m edmem.run_qa``: the original ``run_QA.py`` command line (every flag, same names,
defaults and meaning; docs/training.md) on top of edmem. Entity linking only: ``--generate_target
answer/qa_pair`` is refused with a clear message. The application itself is
:mod:`edmem.apps.run_qa`.

    python -m edmem.run_qa --task wq --data_dir data/openqa --datafile_prefix entity_linking/el_ \\
        --id2entity_file data/wikipedia/entid2entityitemid_1M.json \\
        --generate_target entity_linking --output_dir out/wq --do_train --do_predict ...
    torchrun --nproc_per_node 8 -m edmem.run_qa ...   # one process per GPU (CPU: gloo)
"""

from __future__ import annotations

from edmem.apps.run_qa import main

if __name__ == "__main__":
    raise SystemExit(main())
