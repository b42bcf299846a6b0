#!/usr/bin/env bash
# `make parity`: RecBole's BPR and LightGCN against our MF-BPR and LightGCN on the same split,
# all scored by our evaluator (docs/parity.md). Resumable: a step whose output is complete is
# skipped; delete runs/parity/<dataset>/ (and runs/<config name>-seed42/) to redo one.
#
#   PARITY_DATASETS="ml100k amazon_games"   datasets to run (configs/[tuned/]<dataset>_{mf_bpr,lightgcn}.yaml)
#   PARITY_EPOCHS, PARITY_STOPPING_STEP     RecBole's epoch cap (default: our config's train.epochs) and
#                                           early stopping (default: RecBole's, 10 epochs)
#   PARITY_TORCH_THREADS                    RecBole's CPU threads (default: torch's; 1 on a busy machine)
#   PARITY_SEEDS                            runs per side (default 1): ours with the config's seed, seed+1, ...
#                                           RecBole with 2020, 2021, ...; the table adds means and spreads
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-.venv}
OURS=$VENV/bin/python
LLMREC=$VENV/bin/llmrec
export PARITY_VENV=${PARITY_VENV:-.parity-venv}
RECBOLE=$PARITY_VENV/bin/python
OUT=runs/parity
DATASETS=${PARITY_DATASETS:-ml100k amazon_games}
export TF_CPP_MIN_LOG_LEVEL=2

bash scripts/parity/setup_recbole_env.sh

entries=()
for dataset in $DATASETS; do
  atomic="$OUT/$dataset/atomic"
  if [ ! -f "$atomic/$dataset/export.json" ]; then
    "$OURS" scripts/parity/export_atomic.py "configs/${dataset}_mf_bpr.yaml" --out "$atomic" --name "$dataset"
  fi
  # Our model (its config) : RecBole's model.
  for pair in mf_bpr:BPR lightgcn:LightGCN; do
    ours=${pair%%:*} recbole=${pair##*:}
    # The tuned config when `llmrec tune` wrote one (configs/tuned/), else the hand-set one.
    config="configs/tuned/${dataset}_${ours}.yaml"
    [ -f "$config" ] || config="configs/${dataset}_${ours}.yaml"
    name="$("$OURS" -c 'import sys; from tfrs_llmrec.config import load_experiment
print(load_experiment(sys.argv[1]).name)' "$config")"
    # Our runs are those of `llmrec run CONFIG --seeds N` (seeds seed, seed+1, ... as <name>-seed<S>),
    # each kept when it is already a finished run of exactly this config. A directory left by
    # another config of the same name makes `llmrec run` stop and name it, rather than be compared.
    seeds=${PARITY_SEEDS:-1}
    nice -n 10 "$LLMREC" run "$config" --seeds "$seeds" --set eval.split=test --set export.enabled=false
    mapfile -t run_dirs < <("$OURS" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["runs"]))' \
      "runs/$name-${seeds}seeds/metrics.json")
    for ((index = 0; index < ${#run_dirs[@]}; index++)); do
      run_dir=${run_dirs[index]} recbole_seed=$((2020 + index))
      # RecBole selects its best epoch and stops on the metric our run monitored, within the same
      # epoch cap as ours (PARITY_EPOCHS overrides it); its early stopping keeps RecBole's default.
      read -r monitor epochs < <("$RECBOLE" -c 'import sys, yaml; train = yaml.safe_load(open(sys.argv[1]))["train"]
print(train["monitor"], train["epochs"])' "$run_dir/config.yaml")
      recbole_epochs=${PARITY_EPOCHS:-$epochs}
      # A cap other than ours, or another early stopping, gets its own directories, so a finished run
      # is never reused for other settings.
      recbole_dir="$OUT/$dataset/recbole-${recbole,,}"
      [ "$recbole_epochs" = "$epochs" ] || recbole_dir="$recbole_dir-cap$recbole_epochs"
      [ -z "${PARITY_STOPPING_STEP:-}" ] || recbole_dir="$recbole_dir-stop$PARITY_STOPPING_STEP"
      [ "$index" -eq 0 ] || recbole_dir="$recbole_dir-seed$recbole_seed"
      if [ ! -f "$recbole_dir/result.json" ]; then
        nice -n 10 "$RECBOLE" scripts/parity/recbole_train.py --model "$recbole" --data-path "$atomic" \
          --dataset "$dataset" --out "$recbole_dir" --valid-metric "$monitor" --epochs "$recbole_epochs" \
          --seed "$recbole_seed" ${PARITY_STOPPING_STEP:+--stopping-step "$PARITY_STOPPING_STEP"} \
          ${PARITY_TORCH_THREADS:+--threads "$PARITY_TORCH_THREADS"}
      fi
      entries+=(--entry "$dataset" "$config" "$run_dir" "$recbole_dir")
    done
  done
done
"$OURS" scripts/parity/compare.py --out "$OUT" "${entries[@]}"
