#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md (§10): one short, prepared run for a machine with a CUDA device.
#
#     bash bench/gpu.sh            # CSREC_DATA_DIR=/path/to/shared/data if not ../shared/data
#     bash bench/gpu.sh "yelp"     # one part (lastfm, yelp, scale) where a command's time is limited
#
# Times Base and CSRec-M student epochs and full-ranking passes for GRU4Rec and SASRec on Last.FM
# in float32 and bfloat16 mixed precision side by side (bench/results/throughput_gpu.md), Yelp's
# epochs of all 8 backbones in bfloat16 for the Yelp grid's cost model (throughput_gpu_yelp.md,
# sweep_cost_yelp.md), then the scale run of §6 in each precision (bench/results/scale_gpu.md,
# scale_gpu_bf16.md); each table's machine line names the card.  Nothing here has run on a GPU
# yet, so its duration is unknown: where a command's time is limited, run the parts one by one.
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"bench/gpu.sh: no CUDA device (torch {torch.__version__}); nothing measured")
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__,
      "| native bf16:", torch.cuda.is_bf16_supported(), flush=True)
PY
parts="${1:-lastfm yelp scale}"   # one or more of: lastfm yelp scale (default: all three, in this order)
for part in $parts; do
  case "$part" in
    lastfm)
      python bench/throughput.py --datasets lastfm --backbones gru4rec,sasrec --epochs 3 --warmup 1 \
          --precisions fp32,bf16 --output throughput_gpu ;;
    yelp)  # all 8 backbones at the precision of the Yelp sweep (docs/yelp): the GPU column of §3's cost model
      python bench/throughput.py --datasets yelp --backbones all --epochs 1 --warmup 1 \
          --precisions bf16 --eval-sequences 2000 --output throughput_gpu_yelp
      python bench/sweep_cost.py docs/yelp/run --name yelp ;;
    scale)
      python bench/scale.py --precision fp32 --output scale_gpu
      python bench/scale.py --precision bf16 --output scale_gpu_bf16 ;;
    *) echo "bench/gpu.sh: unknown part '$part' (lastfm, yelp, scale)" >&2; exit 2 ;;
  esac
done
python bench/assemble.py
