#!/usr/bin/env bash
# Issue 21: the shipped agent's recipe (agentrl/shipped/alfworld-agent/README.md) rebuilt from scratch on the
# expert's *fixed* demonstrations (after aaa6509), then scored once on the generated valid_unseen / valid_seen 36.
# Every stage is skipped when its output exists and `learn` resumes from its checkpoints, so a killed run goes on
# by running this again. Usage: [R=/work/runs/v3] [STAGES="data demos learn unseen seen pack unseen1 seen1"] \
#   bench/alfworld_levers/rebuild.sh
# Stage `pack`: the bf16 copy that would ship. Stages `unseen1` / `seen1`: 36 more valid_unseen /
# valid_seen tasks (gen seed 1), scored by that pack and by the agent shipped before
# it (v1, from git; paired). Stage `unseen2` (not in the default list): 100 more valid_unseen tasks, both.
set -euo pipefail
R=${R:-/work/runs/v3}
A=${AGENTRL:-$(dirname "$0")/../../.venv/bin/agentrl}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${OMP_NUM_THREADS:-2}
FORMAT="--thoughts off --no-example --action-space admissible --max-steps 40"
mkdir -p "$R/eval"

v1_agent() {  # the agent shipped before this rebuild (v1), from git
  [ -d "$R/v1" ] && return
  mkdir -p "$R/v1"
  for f in adapter_config.json adapter_model.safetensors agent_config.json; do
    git -C "$(dirname "$0")" show "8f19d50:agentrl/shipped/alfworld-agent/$f" > "$R/v1/$f"
  done
}

score_both() {  # FOLDER SPLIT SEED N ENVS: N fresh SPLIT tasks (gen SEED), scored by the pack and by v1
  local folder=$1 split=$2 seed=$3 n=$4 envs=$5 pair
  [ -d "$R/$folder/json_2.1.1/$split" ] ||
      $A gen alfworld --split "$split" --n "$n" --seed "$seed" --workers 2 --out "$R/$folder"
  v1_agent
  for pair in rebuilt:pack shipped:v1; do  # NAME:FOLDER
    $A rollout --policy dagger --beta-schedule 0 --model "$R/${pair#*:}" --data "$R/$folder" --split "$split" \
        $FORMAT --num-envs "$envs" --out "$R/eval/${pair%%:*}_${split}_seed${seed}.jsonl" --resume --no-progress
  done
}

for stage in ${STAGES:-data demos learn unseen seen pack unseen1 seen1}; do
  echo "== $stage $(date +%T)"
  case $stage in
    data)
      [ -d "$R/data/json_2.1.1/train" ] || $A gen alfworld --split train --n 600 --seed 0 --workers 2 --out "$R/data"
      [ -d "$R/unseen/json_2.1.1/valid_unseen" ] ||
          $A gen alfworld --split valid_unseen --n 36 --seed 0 --workers 2 --out "$R/unseen"
      [ -d "$R/seen/json_2.1.1/valid_seen" ] ||
          $A gen alfworld --split valid_seen --n 36 --seed 0 --workers 2 --out "$R/seen" ;;
    demos)
      [ -s "$R/demos.jsonl" ] || { $A rollout --policy expert --data "$R/data" --split train $FORMAT --num-envs 2 \
          --out "$R/demos.part.jsonl" --no-progress && mv "$R/demos.part.jsonl" "$R/demos.jsonl"; } ;;
    learn)
      [ -f "$R/smol/policy_lora/adapter_config.json" ] || $A learn --algo sft --data "$R/demos.jsonl" --model default \
          --lora --lora-r 16 --lora-alpha 32 --lr 5e-4 --lr-schedule cosine --warmup-steps 10 --batch-size 2 \
          --grad-accum 2 --epochs 1 --precision fp32 --max-length 3072 --seed 0 --save-every 25 --resume \
          --out "$R/smol" ;;
    unseen|seen)
      split=valid_$stage
      $A rollout --policy dagger --beta-schedule 0 --model "$R/smol/policy_lora" --data "$R/$stage" --split $split \
          $FORMAT --num-envs 9 --out "$R/eval/${split}36.jsonl" --resume --no-progress ;;
    pack)
      [ -f "$R/pack/adapter_model.safetensors" ] || $A model pack --adapter "$R/smol/policy_lora" --out "$R/pack" ;;
    unseen1) score_both unseen1 valid_unseen 1 36 9 ;;
    seen1)   score_both seen1 valid_seen 1 36 9 ;;
    unseen2) score_both unseen2 valid_unseen 2 100 10 ;;  # the comparison's power
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
echo "== done $(date +%T)"
