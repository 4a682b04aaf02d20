#!/usr/bin/env bash
# GPU benchmarks at once on one CUDA device, each with a deadline, for a GPU lent for a few minutes.
#
#   bash benchmarks/gpu_all.sh OUT_DIR [SECONDS] [JOB ...]
#
# JOBs (default: all but shakespeare), all started together on the same GPU (each is small and launch-bound, so they
# barely slow one another):
#   shakespeare  shakespeare_char.py --gpu-recipe (nanoGPT's 6x384 model, torch.compile, bf16), then lm_speed
#   vae          vae_ptb.py --models vae --batch-size 64          vae_lm   the same-size LSTM LM (--models lstm_lm)
#   vae_variant  the same with VAE_OVERRIDES (KEY=VALUE ...) set  vae_variant_lm   its LM (studies/vae_ptb_variant.json), e.g.
#                VAE_OVERRIDES="model.init_range=0.1" (docs/vae.md)
#   gan_oracle   gan_oracle.py (the whole SeqGAN oracle recipe)   gan_coco gan_coco.py (MLE, SeqGAN, Gumbel GAN)
#                with GAN_ORACLE_OVERRIDES (KEY=VALUE ...) set, that variant of the recipe (studies/gan_oracle_variant.json),
#                e.g. GAN_ORACLE_OVERRIDES="model.pg_reduction=sum model.disc_l2=0.1 model.disc_steps=235" (docs/gan.md)
# A job past its deadline is stopped; a stopped VAE or LM run is then scored from its best weights so far with
# `genloom evaluate` (marked PARTIAL in its log). SECONDS (default 540) is the whole budget. The results JSON/PNG,
# the runs' metrics.jsonl and each job's log end up in OUT_DIR/results.tar.gz; the logs also in OUT_DIR.
# Corpora: GENLOOM_SHARED_DATA, else ../shared/data. GENLOOM_DEVICE=cpu tries the script without a GPU.
set -u
out=${1:?usage: gpu_all.sh OUT_DIR [SECONDS] [JOB ...]}
budget=${2:-540}
shift $(( $# >= 2 ? 2 : 1 ))
jobs_wanted=${*:-vae vae_lm gan_oracle gan_coco}  # shakespeare (and lm_speed) ran on 2026-11-28
device=${GENLOOM_DEVICE:-cuda}
mkdir -p "$out" runs
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
until_end_minus() { local s=$(( budget - $1 )); echo $(( s > 10 ? s : 10 )); }  # a deadline, at least 10 s
wanted() { [[ " $jobs_wanted " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    >> "$out/gpu.txt" 2>&1

scored_partial() {  # NAME RUN_DIR SECONDS [evaluate options]: score a stopped run's best weights on PTB test
    local name=$1 run=$2 limit=$3
    shift 3
    echo "PARTIAL: $name stopped at its deadline; scoring its best weights so far"
    timeout "$limit" python3 -m genloom evaluate "$run" --data "${GENLOOM_SHARED_DATA:-../shared/data}/ptb/ptb.test.txt.gz" \
        --json --device "$device" "$@"
}

pids=()
if wanted shakespeare; then
    ( timeout $(( budget * 5 / 9 )) python3 benchmarks/shakespeare_char.py --device "$device" --gpu-recipe
      limit=$(( $(left) - 30 )); timeout $(( limit > 10 ? limit : 10 )) python3 benchmarks/lm_speed.py --device "$device" \
          --train-batch 32 ) > "$out/lm.log" 2>&1 &
    pids+=($!)
fi
for variant in "" _variant; do  # the recipe, and with VAE_OVERRIDES its variant
    overrides=""
    [[ -n $variant ]] && overrides=${VAE_OVERRIDES:-}
    [[ -n $variant && -z $overrides ]] && continue  # a variant needs its overrides
    if wanted vae$variant; then
        ( timeout $(until_end_minus 120) python3 benchmarks/vae_ptb.py --device "$device" --models vae --batch-size 64 \
              --precision fp32 $overrides || scored_partial vae runs/bench_vae_ptb${variant}_vae 100 --iw-samples 500
        ) > "$out/vae$variant.log" 2>&1 &
        pids+=($!)
    fi
    if wanted vae${variant}_lm; then
        ( timeout $(until_end_minus 200) python3 benchmarks/vae_ptb.py --device "$device" --models lstm_lm \
              --batch-size 64 --precision fp32 $overrides || scored_partial lstm_lm runs/bench_vae_ptb${variant}_lstm_lm 60
        ) > "$out/vae${variant}_lm.log" 2>&1 &
        pids+=($!)
    fi
done
if wanted gan_oracle; then
    ( timeout $(until_end_minus 20) python3 benchmarks/gan_oracle.py --device "$device" --precision fp32 \
          ${GAN_ORACLE_OVERRIDES:-} ) > "$out/gan.log" 2>&1 &
    pids+=($!)
fi
if wanted gan_coco; then
    ( timeout $(until_end_minus 20) python3 benchmarks/gan_coco.py --device "$device" ) > "$out/gan_coco.log" 2>&1 &
    pids+=($!)
fi
( while sleep 30; do echo "--- $(( $(date +%s) - start )) s"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for f in "$out"/*.log; do echo "$(basename "$f"): $(tail -c 300 "$f" | tr '\r' '\n' | tail -n 1)"; done; done ) &
monitor=$!
wait "${pids[@]}"
kill "$monitor" 2>/dev/null
find runs -name metrics.jsonl -path '*bench_*' > "$out/metrics_files.txt"
tar czf "$out/results.tar.gz" benchmarks/results "$out"/*.log "$out/gpu.txt" $(cat "$out/metrics_files.txt") 2>/dev/null
echo "all jobs done after $(( $(date +%s) - start )) s"
