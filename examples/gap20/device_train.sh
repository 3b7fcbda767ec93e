#!/usr/bin/env bash
# Continue the committed GAP-20 runs (examples/gap20/training/<preset>) on a lent GPU, both presets
# side by side on the one device, each for MINUTES of training, and hand back what resumes them.
#
# Here, before the call: the split and the two wheels the GPU machine lacks (both git-ignored):
#   python examples/gap20/prepare.py ../shared/data/gap20 --output runs/gap20/data
#   bash examples/gap20/device_train.sh --fetch-wheels
# The call (the `device` tool's run): command `bash examples/gap20/device_train.sh 7`, carry
#   ["runs/gap20/data", ".whl"], timeout_s 600. The command takes about 2 minutes more than
#   MINUTES (install, neighbour lists, the last epoch, validation).
# Back here: copy <files_at>/<preset>/{checkpoint.pt,model.pt,metrics.csv} into
#   examples/gap20/training/<preset>/, unpack <files_at>/<preset>/snapshots.tar there
#   (tar -xf ... -C examples/gap20/training/<preset>) and commit; the next session resumes from there.
#   Four files a preset come back (the tool returns at most 8): the logs stay there, and their
#   last lines are printed.
#
# usage: device_train.sh MINUTES [MAX_EPOCHS] [PRESETS]
#   MAX_EPOCHS: stop each run at this epoch (default: the YAML's), e.g. to bring the baseline to
#     the attention run's epoch for the same-epochs comparison; PRESETS: default "attention baseline".
# Environment: DEVICE (default cuda), WORK (default /tmp/gap20-device), OUT (set by the tool),
#   MAX_ATOMS (--max-atoms-per-pass, default 1024: whole, the baseline's validation batches of 16
#   frames took more than the 24 GB of a CPU machine, which killed it on 2026-12-07; parts give the same
#   numbers, and 0.15 % of random 4-frame training batches of the split exceed 1,024 atoms),
#   EXTRA (more attnmace-train flags, for a quick check: EXTRA="--max-steps-per-epoch 2").
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--fetch-wheels" ]; then
  # the versions installed here, as wheels for the GPU machine's Python 3.12
  versions=$(python -c "import ase, vesin; print(f'ase=={ase.__version__} vesin=={vesin.__version__}')")
  # shellcheck disable=SC2086
  python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $versions
  exit 0
fi

minutes=${1:?usage: device_train.sh MINUTES [MAX_EPOCHS] [PRESETS]}
max_epochs=${2:-}
presets=${3:-attention baseline}
out=${OUT:?OUT must name the folder whose files come back}
work=${WORK:-/tmp/gap20-device}
[ -f runs/gap20/data/train.extxyz ] || { echo "runs/gap20/data is missing: run prepare.py and carry it" >&2; exit 2; }

if ! python3 -c "import ase, vesin" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch, e3nn, attnmace; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'cuda', torch.cuda.is_available())"

hours=$(python3 -c "print($minutes / 60)")
pids=()
for preset in $presets; do
  mkdir -p "$work/$preset" "$out/$preset"
  if [ -d "examples/gap20/training/$preset" ]; then cp -r "examples/gap20/training/$preset/." "$work/$preset/"; fi
  # shellcheck disable=SC2086
  python3 -m attnmace.train --config "examples/gap20/$preset.yaml" --resume --device "${DEVICE:-cuda}" \
    --output-dir "$work/$preset" --max-hours "$hours" --max-atoms-per-pass "${MAX_ATOMS:-1024}" ${max_epochs:+--max-epochs "$max_epochs"} ${EXTRA:-} \
    >"$work/$preset.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for preset in $presets; do
  for name in checkpoint.pt model.pt metrics.csv; do
    if [ -f "$work/$preset/$name" ]; then cp "$work/$preset/$name" "$out/$preset/"; fi
  done
  if [ -d "$work/$preset/snapshots" ]; then tar -cf "$out/$preset/snapshots.tar" -C "$work/$preset" snapshots; fi
  tail -n 3 "$work/$preset.log"
done
exit $status
