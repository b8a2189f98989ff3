#!/usr/bin/env bash
# Issue 21, part 1: the lever study on the CPU agent. Every stage is skipped when its output exists, so a killed
# run resumes by running this again. Selection happens on held-out *train* tasks (seed 9000), never on
# valid_seen / valid_unseen. Usage: bench/alfworld_levers/run.sh STAGE [R=/work/runs/lever]
#   stages: data | demos | model | dagger NAME FROM EVERY | sft NAME DATA STEPS [learn flags...] | eval NAME [rollout flags...]
set -euo pipefail
R=${R:-/work/runs/lever}
A=${AGENTRL:-$(dirname "$0")/../../.venv/bin/agentrl}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${OMP_NUM_THREADS:-1}
FORMAT="--thoughts off --no-example --action-space admissible --max-steps 40"
stage=$1; shift
case $stage in
  data)   # 1,500 train tasks to learn from, 100 more (another seed) to choose on
    $A gen alfworld --split train --n 1500 --seed 0 --workers 2 --out "$R/data"
    $A gen alfworld --split train --n 100 --seed 9000 --workers 2 --out "$R/heldout" ;;
  demos)  # expert demonstrations, thought-free turns; and one renamed copy of each
    [ -s "$R/demos.jsonl" ] || $A rollout --policy expert --data "$R/data" --split train $FORMAT \
        --num-envs 2 --out "$R/demos.jsonl" --no-progress
    [ -s "$R/demos_aug.jsonl" ] || $A augment --data "$R/demos.jsonl" --out "$R/demos_aug.jsonl" --copies 1 --seed 0 ;;
  model)  # one initialisation for every configuration: 4.3M Llama, word tokenizer fitted on demos + copies
    [ -d "$R/base_model" ] || $A model tiny --tokenizer word --hidden-size 256 --num-layers 4 \
        --data "$R/demos.jsonl,$R/demos_aug.jsonl" --out "$R/base_model" ;;
  sft)    # NAME DATA STEPS [flags]: the same number of optimizer steps (batch 8) for every configuration;
          # FROM=sft_base/policy continues a trained policy (LR=0.001 then) instead of the fresh initialisation
          # To end a run early at its checkpoint K (--save-every 200): kill it, rerun the same line with STEPS=K
    name=$1 data=$2 steps=$3; shift 3
    $A learn --algo sft --data "$data" --model "$R/${FROM:-base_model}" --out "$R/$name" --max-steps "$steps" \
        --batch-size 8 --lr "${LR:-0.002}" --lr-schedule cosine --warmup-steps 50 --max-length 4096 \
        --save-every 200 --log-every 50 --resume "$@" ;;
  dagger) # NAME FROM EVERY: the policy FROM acts greedily on every EVERY-th train task folder, the expert labels
          # each state. Folders sort by task type, so `--episodes N` (the first N) would hold one or two types only.
    name=$1 from=$2 every=$3; split="$R/${name}_data/json_2.1.1/train"; mkdir -p "$split"
    ls "$R/data/json_2.1.1/train" | awk -v k="$every" 'NR % k == 1' |
        while read -r task; do ln -sfn "$R/data/json_2.1.1/train/$task" "$split/$task"; done
    $A rollout --policy dagger --beta-schedule 0 --model "$R/$from" --data "$R/${name}_data" --split train \
        $FORMAT --num-envs 8 --out "$R/$name.jsonl" --resume --no-progress ;;
  eval)   # NAME [flags]: greedy on the 100 held-out train tasks (DATA=unseen SPLIT=valid_unseen: another task set);
          # DAgger labels give on-policy expert agreement
    name=$1; shift; out="$R/eval/$name.jsonl"; mkdir -p "$R/eval"
    $A rollout --policy dagger --beta-schedule 0 --model "$R/${MODEL:-$name}/policy" --data "$R/${DATA:-heldout}" \
        --split "${SPLIT:-train}" $FORMAT --num-envs ${NUM_ENVS:-4} --out "$out" --resume --no-progress "$@" ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
