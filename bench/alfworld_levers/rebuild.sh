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
    unseen1|seen1)
      folder=${stage%1}1 split=valid_${stage%1}
      [ -d "$R/$folder/json_2.1.1/$split" ] || $A gen alfworld --split $split --n 36 --seed 1 --workers 2 --out "$R/$folder"
      if [ ! -d "$R/v1" ]; then  # the agent shipped before this rebuild (v1), from git
        mkdir -p "$R/v1" && for f in adapter_config.json adapter_model.safetensors agent_config.json; do
          git -C "$(dirname "$0")" show "8f19d50:agentrl/shipped/alfworld-agent/$f" > "$R/v1/$f"; done
      fi
      for model in "$R/pack" "$R/v1"; do
        name=$([ "$model" = "$R/v1" ] && echo shipped || echo rebuilt)
        $A rollout --policy dagger --beta-schedule 0 --model "$model" --data "$R/$folder" --split $split \
            $FORMAT --num-envs 9 --out "$R/eval/${name}_${split}_seed1.jsonl" --resume --no-progress
      done ;;
    unseen2)  # 100 more valid_unseen tasks (gen seed 2): the comparison's power
      [ -d "$R/unseen2/json_2.1.1/valid_unseen" ] ||
          $A gen alfworld --split valid_unseen --n 100 --seed 2 --workers 2 --out "$R/unseen2"
      for model in "$R/pack" "$R/v1"; do  # v1 as in unseen1|seen1 (run those first)
        name=$([ "$model" = "$R/v1" ] && echo shipped || echo rebuilt)
        $A rollout --policy dagger --beta-schedule 0 --model "$model" --data "$R/unseen2" --split valid_unseen \
            $FORMAT --num-envs 10 --out "$R/eval/${name}_valid_unseen_seed2.jsonl" --resume --no-progress
      done ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
echo "== done $(date +%T)"
