#!/usr/bin/env bash
# Train from a data pack on a GPU machine (docs/training.md): one process, the pack on the
# GPU once, bfloat16 autocast, steps/s printed at the first log row, last.pt every minute,
# all under $OUT/run. Installs nothing: what that machine lacks of the pure-Python packages
# the trainer imports (yaml, tqdm, lpips, pytorch_msssim) comes from the pack's runtime/.
#
#   bash tools/train_gpu.sh [PACK_DIR] [SECONDS] [KEY=VALUE ...]
#     PACK_DIR  default packs/x264_crf22-44 (tools/make_pack.py writes it)
#     SECONDS   stop and save after this long (default 480)
#     KEY=VALUE config overrides (e.g. data.batch_size=128)
#   env: CONFIG (default configs/video/x264_full_strength_gpu.yaml), OUT (default runs/gpu),
#        PYTHON (default python3)
# To go on from an earlier run: export its last.pt (tools/train.py --export last.pt X.pt
# --half, 1.6 MB; the full last.pt with its optimiser state is 13 MB, too much to carry
# beside the pack) and pass init_from=X.pt.
set -euo pipefail
pack=${1:-packs/x264_crf22-44}
seconds=${2:-480}
shift $(( $# < 2 ? $# : 2 ))
python=${PYTHON:-python3}
config=${CONFIG:-configs/video/x264_full_strength_gpu.yaml}
run_dir=${OUT:-runs/gpu}/run
if [ ! -f "$pack/pack.npz" ]; then
    echo "error: no pack at $pack (build it with: python tools/make_pack.py" \
         "configs/video/x264_full_strength.yaml $pack)" >&2
    exit 2
fi
pack_dir=$(cd "$pack" && pwd)
site=$(mktemp -d)
for module in yaml tqdm lpips pytorch_msssim; do
    "$python" -c "import $module" 2>/dev/null || ln -s "$pack_dir/runtime/$module" "$site/$module"
done
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
export ENHANCER_LPIPS_WEIGHTS="$pack_dir/lpips_weights"
"$python" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0)
                                    if torch.cuda.is_available() else 'no CUDA device')"
exec "$python" tools/train.py "$config" --run-dir "$run_dir" \
    --set data.pack="$pack" time_limit_s="$seconds" "$@"
