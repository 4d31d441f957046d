#!/usr/bin/env bash
# WebQuestions entity linking from scratch on CPU, end to end (docs/training.md, acceptance 1):
#   1. a byte-level BPE tokenizer trained on the WQ training questions + a small BART config,
#   2. python -m edmem.run_qa: train (compact memory over the 8,548 WQ entities), early stop,
#      predict the test split,
#   3. both evaluators of the original (exact_match, entity_linking_eval).
# Usage: benchmarks/wq_recipe.sh [OUTPUT_DIR]
#   (env: EDMEM_SHARED, PYTHON, THREADS, EPOCHS, DEVICE = auto|cpu|cuda, default auto;
#    PRECISION_FLAG = --bf16 or --fp16 for mixed precision on CUDA, default none)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${EDMEM_SHARED:-../shared}
WQ=$SHARED/data/edmem-wq
OUT=${1:-runs/wq_recipe}
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-12}
DEVICE=${DEVICE:-auto}
PRECISION_FLAG=${PRECISION_FLAG:-}
EL=$WQ/openqa/wq/entity_linking
if [ ! -f "$EL/el_wq-train.jsonl" ]; then echo "WQ data not found under $WQ" >&2; exit 1; fi
rm -rf "$OUT"; mkdir -p "$OUT"
start=$(date +%s)

# 1. tokenizer (2,000 BPE entries on the training questions) + a small BART config
"$PY" - "$EL/el_wq-train.jsonl" "$OUT/small-bart" <<'PYEOF'
import json, sys
from edmem.data.tokenization import train_bpe_tokenizer
questions = [json.loads(line)["question"] for line in open(sys.argv[1], encoding="utf-8")]
out = train_bpe_tokenizer(questions, sys.argv[2], vocab_size=2000, min_frequency=2)
config = json.loads((out / "config.json").read_text())
config.update(d_model=128, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512,
              max_position_embeddings=128, dropout=0.1, attention_dropout=0.1,
              activation_dropout=0.1, activation_function="gelu", init_std=0.02,
              scale_embedding=False)
(out / "config.json").write_text(json.dumps(config, indent=1))
print(f"tokenizer: {len(json.load(open(out / 'vocab.json')))} tokens from {len(questions)} questions")
PYEOF

# 2. train + early stop + predict test (README EL flags where they apply; a small model from
#    scratch needs a larger learning rate than the 1e-5 used to fine-tune a pretrained one)
"$PY" -m edmem.run_qa --task wq --data_dir "$WQ/openqa" --datafile_prefix entity_linking/el_ \
    --id2entity_file "$WQ/wikipedia/entid2entityitemid_wq.json" --compact_entity_memory True \
    --model_name "$OUT/small-bart" --pretrain_ckpt None --output_dir "$OUT/run" \
    --generate_target entity_linking --do_train --do_predict \
    --num_lower_layers 1 --num_upper_layers 2 --entity_embed_size 128 \
    --lower_decoder_attn upper_encoder --inference_nearest_k_entity 100 \
    --train_batch_size 32 --predict_batch_size 64 --learning_rate 1e-3 --warmup_ratio 0.05 \
    --max_grad_norm 1.0 --num_train_epochs "$EPOCHS" --eval_period 96 --wait_step 3 \
    --seed 3518 --num_threads "$THREADS" --device "$DEVICE" $PRECISION_FLAG --tensorboard False 2>&1 | grep -v "^Namespace" \
    | tee "$OUT/train_stdout.txt" | grep -E "Step [0-9]+, Train|Best EM|EM on test|Total global"

# 3. the original's evaluators
"$PY" -m edmem.evaluation.exact_match -pred "$OUT/run/predictions.json" \
    -gold "$EL/el_wq-test.jsonl" -ans_link "$EL/sling_invocab-test.json" \
    -entity_vocab "$WQ/wikipedia/entity_wq.json" 2>/dev/null | tee "$OUT/eval.txt"
"$PY" -m edmem.evaluation.entity_linking_eval -pred "$OUT/run/predictions.json" \
    -gold "$EL/el_wq-test.jsonl" | tee -a "$OUT/eval.txt"
echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/eval.txt"
